// `xiaozhi-gateway start`: load the configuration (file < env < flags), start the gateway, and shut
// down cleanly on SIGTERM/SIGINT (stop accepting, goodbye to every device, drain, exit within 10 s).
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { WORKER_INDEX_ENV } from './cluster/messages.js';
import { CONFIG_SOURCES, ConfigError, loadConfig, type GatewayConfig } from './config.js';
import type { Gateway } from './gateway.js';

const HELP = `Usage: xiaozhi-gateway start [options]

Runs the gateway: embedded MQTT broker, OTA/metrics HTTP, UDP audio, native pipeline, agent.
Every flag has an environment variable; a JSON config file sets the same keys (see README).

${CONFIG_SOURCES.map((s) => `  ${(s.kind === 'boolean' ? s.flag : s.flag + ' <' + s.kind + '>').padEnd(26)} ${s.env}`).join('\n')}
  --config <file>            XIAOZHI_CONFIG
  -h, --help

Defaults: --mqtt-port 1883 --udp-port 8888 --http-port 8003 (OTA at /xiaozhi/ota/, /metrics,
/healthz, /readyz) --auth signature --agent echo --public-host <first LAN IPv4> --workers 1.
--workers N|auto: N gateway processes sharing the MQTT and HTTP ports; worker i binds UDP port
--udp-port + i. --recycle-after-sessions K: a worker is replaced after K audio sessions (drained:
conversations finish, idle devices reconnect to the others); one more UDP port, --udp-port + N.`;

export async function runStartCli(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } };
    // A boolean setting is a bare flag (--proxy-protocol); its environment variable takes true/false.
    for (const s of CONFIG_SOURCES) options[s.flag.slice(2)] = { type: s.kind === 'boolean' ? 'boolean' : 'string' };
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    process.stderr.write(`xiaozhi-gateway start: ${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const flags: Record<string, string> = {};
  for (const [k, v] of Object.entries(values)) if (typeof v === 'string' || (v === true && k !== 'help')) flags[`--${k}`] = String(v);
  let config: GatewayConfig;
  try {
    config = loadConfig({ flags });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`xiaozhi-gateway start: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // --workers N: this process is either the primary that supervises N gateways, or one of them
  // (forked by that primary with the same command line). --workers 1 is one plain process, as ever,
  // unless workers are recycled: then a primary supervises the one worker and its replacements.
  if (cluster.isWorker && process.env[WORKER_INDEX_ENV] !== undefined) return (await import('./cluster/worker.js')).runWorker(config);
  if (config.workers > 1 || config.recycleAfterSessions > 0) return (await import('./cluster/primary.js')).runPrimary(config);
  // Loaded here, not at the top: the primary of --workers N never loads the native addon.
  // The same embedding API an application uses (src/embed.ts).
  const { EmbeddedGateway } = await import('./embed.js');
  const embedded = new EmbeddedGateway(config, {});
  let gateway: import('./gateway.js').Gateway;
  try {
    await embedded.start();
    gateway = embedded.gateway;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`xiaozhi-gateway start: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // An exception that escapes to the event loop is a bug (every network entry point contains its
  // own failures): say so in one fatal log line with the stack, then exit non-zero so the
  // supervisor restarts a process whose state can no longer be trusted.
  const fatal = (kind: string) => (err: unknown) => {
    gateway.logger.fatal({ err, kind }, `${kind}: exiting (this is a bug; please report it with this log line)`);
    process.exit(70);
  };
  process.on('uncaughtException', fatal('uncaughtException'));
  process.on('unhandledRejection', fatal('unhandledRejection'));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      // The hard deadline: whatever hangs, the process ends within 10 s of the signal.
      setTimeout(() => {
        gateway.logger.error('forced exit after 10 s');
        process.exit(1);
      }, 10_000).unref();
      gateway.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          gateway.logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
