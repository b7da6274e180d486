// A gateway in a process of its own, for the hostile tier and the live fuzzer: whatever the input
// does to it (an uncaught exception, an unhandled rejection, an exit), the parent sees it over IPC
// instead of the test process dying with it. Config comes as JSON in argv[2]; the child answers
// {id, type:'state'} queries with counters, sessions, streams, UDP bindings and active resources.
import http from 'node:http';
import { loadConfig } from '../../dist/src/config.js';
import { Gateway } from '../../dist/src/gateway.js';

const send = (m) => {
  try {
    if (process.connected) process.send(m);
  } catch { /* parent gone */ }
};

function fatal(kind, err) {
  const text = err instanceof Error ? `${err.name}: ${err.message}${err.code ? ` [${err.code}]` : ''}\n${err.stack}` : String(err);
  process.stderr.write(`gateway-child ${kind}: ${text}\n`);
  send({ type: 'fatal', kind, error: text });
  // Let the IPC message leave before exiting.
  setTimeout(() => process.exit(70), 50);
}
process.on('uncaughtException', (err) => fatal('uncaughtException', err));
process.on('unhandledRejection', (err) => fatal('unhandledRejection', err));

const config = JSON.parse(process.argv[2] ?? '{}');
// Loopback only; the environment of the test run never leaks into the config (env: {}).
const gateway = await Gateway.start(loadConfig({
  env: {},
  overrides: {
    mqttPort: 0, udpPort: 0, httpPort: 0, mqttHost: '127.0.0.1', udpHost: '127.0.0.1', httpHost: '127.0.0.1',
    publicHost: '127.0.0.1', auth: 'signature', signatureKey: 'hostile-tier-signature-key-0123456789', logLevel: 'silent', agent: 'echo',
    ...config,
  },
}));

/** xiaozhi_udp_bindings from /metrics (the UDP server's handler map is private). */
function scrapeBindings() {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: gateway.ports.http, path: '/metrics', agent: false, headers: { connection: 'close' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        const b = /^xiaozhi_udp_bindings(?:\{[^}]*\})? (\d+)/m.exec(text);
        const s = /^xiaozhi_pipeline_state\{gauge="streams_open"[^}]*\} (\d+)/m.exec(text);
        resolve({ udpBindings: b ? Number(b[1]) : -1, streamsOpen: s ? Number(s[1]) : -1 });
      });
      res.on('error', () => resolve({ udpBindings: -1, streamsOpen: -1 }));
    });
    req.on('error', () => resolve({ udpBindings: -1, streamsOpen: -1 }));
    req.setTimeout(3000, () => req.destroy());
  });
}

function resources() {
  const out = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

async function state() {
  // Resources first: the scrape below opens (and closes) two sockets of its own.
  const res = resources();
  const m = gateway.pipeline.metrics();
  const native = {};
  for (const [k, v] of Object.entries(m.counters ?? {})) native[k] = Number(v);
  return {
    counters: gateway.counters(),
    stats: gateway.stats,
    sessionsByState: gateway.sessionsByState(),
    openStreams: gateway.pipeline.openStreams,
    ...(await scrapeBindings()),
    resources: res,
    native,
    memory: process.memoryUsage().rss,
    // Prototype pollution would show up as new keys on Object.prototype / Array.prototype.
    protoKeys: Object.getOwnPropertyNames(Object.prototype).length + Object.getOwnPropertyNames(Array.prototype).length,
  };
}

process.on('message', async (msg) => {
  if (!msg || typeof msg !== 'object') return;
  try {
    if (msg.type === 'state') send({ id: msg.id, type: 'state', state: await state() });
    else if (msg.type === 'stop') {
      await gateway.stop('test end');
      send({ id: msg.id, type: 'stopped' });
      process.disconnect?.();
      setTimeout(() => process.exit(0), 20).unref();
    }
  } catch (err) {
    fatal('ipc-handler', err);
  }
});
process.on('disconnect', () => {
  // The parent is gone (a killed test run): never linger.
  void gateway.stop('parent gone').finally(() => process.exit(0));
});

send({ type: 'ready', ports: gateway.ports, config: { signatureKey: gateway.config.signatureKey } });
