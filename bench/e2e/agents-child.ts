// Every bench agent of `bench e2e`, one participant each, in ONE process, started at a lower
// priority (nice) than the gateway so that the gateway's own latency is what the bench measures.
import { BenchAgent } from './agent.js';
import type { ChildConfig, FromAgents, ToAgents } from './protocol.js';
import { joinInBatches } from './room-join.js';

const send = (m: FromAgents) => process.send!(m);

// At a low priority on a busy machine a join can time out in the server's handshake: retried.
async function joinWithRetry(cfg: ChildConfig, room: string, identity: string): Promise<BenchAgent> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await BenchAgent.join(cfg.livekitUrl, cfg.apiKey, cfg.apiSecret, room, identity);
    } catch (err) {
      if (attempt >= 3) throw err;
      process.stderr.write(`bench e2e agents: joining ${room} failed (${(err as Error).message.split('\n')[0]}), retrying\n`);
    }
  }
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
  const agents: BenchAgent[] = [];
  process.on('message', async (m: ToAgents) => {
    try {
      if (m.type === 'join') {
        // agents[i] is session i of the turn plan (it speaks that session's turns).
        const first = agents.length;
        await joinInBatches(m.rooms, async (r, i) => {
          agents[first + i] = await joinWithRetry(cfg, r.room, r.identity);
        });
        send({ type: 'joined', count: m.rooms.length });
      } else if (m.type === 'speak') {
        agents.forEach((a, i) => a.speak(m.plan, i));
      } else if (m.type === 'cpu') {
        const u = process.cpuUsage();
        send({ type: 'cpu', userUs: u.user, systemUs: u.system });
      } else if (m.type === 'stop') {
        await Promise.allSettled(agents.map((a) => a.leave()));
        process.exit(0);
      }
    } catch (err) {
      send({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  });
  send({ type: 'ready' });
}

main().catch((err: Error) => {
  send({ type: 'error', message: err.stack ?? err.message });
  process.exit(1);
});
