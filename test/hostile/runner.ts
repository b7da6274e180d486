// Runs a table of hostile cases against a gateway child process while a canary device keeps talking
// to the echo agent. Every case: the process lives (no uncaught exception / unhandled rejection /
// exit), the canary keeps hearing its whole echo, the expected counters moved, the must-stay-zero
// counters did not, and once the case's clients are gone nothing it opened is left (sessions, MQTT
// connections, native streams, UDP bindings, sockets, timers) — all against the canary's baseline.
import type dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng, type Rng } from '../helpers/prng.mjs';
import {
  Canary, counterValue, Device, footprint, ipAllocator, MUST_STAY_ZERO, RawMqtt, sleep, startGateway, waitClean,
  type ChildState, type Footprint, type GatewayChild, type HttpResult, httpRequest,
} from './harness.mjs';

export type Expectation = string | { counter: string; min?: number; exact?: number; max?: number } | { anyOf: string[] };

export interface Ctx {
  gw: GatewayChild;
  canary: Canary;
  rng: Rng;
  /** A fresh loopback source address (127.N.x.y) no other case uses. */
  ip(): string;
  /** A device that did OTA and CONNECT from its own address (closed after the case). */
  device(o?: { ip?: string; hello?: boolean }): Promise<Device>;
  /** A raw TCP connection to the broker from its own address (closed after the case). */
  mqtt(ip?: string): Promise<RawMqtt>;
  /** A UDP socket bound to `ip` (closed after the case). */
  udp(ip?: string): Promise<dgram.Socket>;
  /** An HTTP request from its own address (or `localAddress`). */
  http(o: Parameters<typeof httpRequest>[0] extends infer P ? Omit<P & object, 'port'> & { port?: number } : never): Promise<HttpResult>;
  /** Sends to the gateway's UDP port. */
  sendUdp(socket: dgram.Socket, data: Buffer): Promise<void>;
  /** Counter values at the start of the case. */
  before: ChildState;
  /** Registers a cleanup step run after the case (even when it throws). */
  defer(fn: () => unknown): void;
}

export interface HostileCase {
  name: string;
  run(ctx: Ctx): Promise<void>;
  /** Counters that must move (delta ≥ 1 unless min/exact/max say otherwise). Empty: only liveness and leaks. */
  expect: Expectation[];
  /** Extra time for this case (ms). */
  timeoutMs?: number;
  /** Wait for a full canary turn after this case (cases aimed at the canary itself). */
  canaryTurn?: boolean;
}

export interface CatalogueOptions {
  file: string;
  secondOctet: number;
  seed: number;
  gateway?: Record<string, unknown>;
  categories: Record<string, HostileCase[]>;
}

// Timers of the canary's own turn come and go (listen-stop grace, echo playback interval, pacer):
// the baseline is the maximum seen over a whole turn, plus this slack for a turn's overlap.
const TIMER_SLACK = 4;

export function hostileCatalogue(o: CatalogueOptions): void {
  let gw: GatewayChild;
  let canary: Canary;
  let base: Footprint;
  let baseProtoKeys = 0;
  const nextIp = ipAllocator(o.secondOctet);
  const random = rng(o.seed);
  const started = performance.now();
  const ran: Record<string, number> = {};

  beforeAll(async () => {
    gw = await startGateway(o.gateway ?? {});
    canary = new Canary(gw);
    await canary.start();
    // Baseline: the canary's footprint, timers at their maximum over a turn.
    let timers = 0;
    let s = await gw.state();
    const t0 = performance.now();
    while (performance.now() - t0 < 1600) {
      s = await gw.state();
      timers = Math.max(timers, s.resources.Timeout ?? 0);
      await sleep(100);
    }
    base = { ...footprint(s), timers };
    baseProtoKeys = s.protoKeys;
    expect(base.sessions, 'canary baseline').toBe(1);
    expect(base.openStreams, 'canary baseline').toBe(2);
    expect(base.udpBindings, 'canary baseline').toBe(1);
  }, 60_000);

  afterAll(async () => {
    try {
      if (gw && gw.alive() && canary) {
        // The canary must still be heard after the whole catalogue.
        await canary.waitTurns(1, 25_000);
        const clean = await waitClean(gw, base, { timeoutMs: 5000, timerSlack: TIMER_SLACK });
        expect(clean.bad ?? [], `${o.file}: leftovers after the whole catalogue`).toEqual([]);
        const s = clean.state;
        for (const c of MUST_STAY_ZERO) expect(s.counters[c] ?? 0, `${o.file}: ${c} after the whole catalogue`).toBe(0);
        const secs = ((performance.now() - started) / 1000).toFixed(1);
        const byCat = Object.entries(ran).map(([k, v]) => `${k} ${v}`).join(', ');
        console.log(`hostile ${o.file}: ${Object.values(ran).reduce((a, b) => a + b, 0)} cases (${byCat}), canary ${canary.turns} turns, 0 crashes, ${secs} s`);
      }
      expect(gw?.problem() ?? null, `${o.file}: gateway child at the end`).toBeNull();
    } finally {
      await canary?.stop().catch(() => {});
      await gw?.stop().catch(() => {});
    }
  }, 60_000);

  for (const [category, cases] of Object.entries(o.categories)) {
    describe(category, () => {
      for (const c of cases) {
        it(c.name, async () => {
          const label = `[${category}] ${c.name}`;
          expect(gw.problem(), `${label}: gateway child before the case`).toBeNull();
          const before = await gw.state();
          const cleanups: Array<() => unknown> = [];
          const ctx: Ctx = {
            gw, canary, rng: random, before,
            ip: nextIp,
            defer: (fn) => cleanups.push(fn),
            async device(opts = {}) {
              const d = await Device.connect(gw, { ip: opts.ip ?? nextIp() });
              cleanups.push(() => d.close({ graceful: false }));
              if (opts.hello) await d.sayHello();
              return d;
            },
            async mqtt(ip) {
              const m = await RawMqtt.connect(gw.ports.mqtt, ip ?? nextIp());
              cleanups.push(() => m.destroy());
              return m;
            },
            async udp(ip) {
              const { default: dgramMod } = await import('node:dgram');
              const s = dgramMod.createSocket('udp4');
              s.on('error', () => {});
              await new Promise<void>((r) => s.bind(0, ip ?? nextIp(), () => r()));
              cleanups.push(() => { try { s.close(); } catch { /* closed */ } });
              return s;
            },
            http: (opts) => httpRequest({ localAddress: nextIp(), ...opts, port: opts.port ?? gw.ports.http } as Parameters<typeof httpRequest>[0]),
            sendUdp: (socket, data) => new Promise<void>((r) => socket.send(data, gw.ports.udp, '127.0.0.1', () => r())),
          };
          canary.enter(label);
          try {
            await c.run(ctx);
          } finally {
            for (const f of cleanups.reverse()) {
              try {
                await f();
              } catch { /* best effort */ }
            }
            canary.leave(label);
          }
          // Expected counters (they may move asynchronously: poll).
          const deadline = performance.now() + 3000;
          let after = await gw.state();
          const unmet = (s: ChildState): string[] => c.expect.flatMap((e) => {
            if (typeof e === 'object' && 'anyOf' in e) {
              return e.anyOf.some((k) => counterValue(s, k) > counterValue(before, k)) ? [] : [`none of ${e.anyOf.join(', ')} moved`];
            }
            const spec = typeof e === 'string' ? { counter: e } : e;
            const delta = counterValue(s, spec.counter) - counterValue(before, spec.counter);
            const min = spec.exact ?? spec.min ?? 1;
            if (delta < min) return [`${spec.counter} moved by ${delta}, expected ${spec.exact !== undefined ? 'exactly' : 'at least'} ${min}`];
            if (spec.exact !== undefined && delta !== spec.exact) return [`${spec.counter} moved by ${delta}, expected exactly ${spec.exact}`];
            if (spec.max !== undefined && delta > spec.max) return [`${spec.counter} moved by ${delta}, expected at most ${spec.max}`];
            return [];
          });
          while (unmet(after).length && performance.now() < deadline) {
            await sleep(50);
            after = await gw.state();
          }
          if (c.expect.some((e) => typeof e === 'object' && 'exact' in e && e.exact !== undefined)) {
            await sleep(150);  // an exact count must not keep climbing
            after = await gw.state();
          }
          expect(gw.problem(), `${label}: gateway child`).toBeNull();
          const problems = unmet(after);
          if (problems.length || process.env.HOSTILE_VERBOSE) {
            const noise = /^(udp_received|udp_sent|mqtt_messages_(in|out)|uplink_|downlink_|tasks_|batches|encoder_|queue_|pool_|workers_|streams_)/;
            const moved = [...Object.keys(after.counters), ...Object.keys(after.native)]
              .filter((k) => !noise.test(k) && counterValue(after, k) !== counterValue(before, k))
              .map((k) => `${k} +${counterValue(after, k) - counterValue(before, k)}`);
            if (problems.length) problems.push(`(counters that moved: ${moved.join(', ') || 'none'})`);
            else console.log(`${label}: ${moved.join(', ')}`);
          }
          expect(problems, `${label}: counters`).toEqual([]);
          // Must not move in this case (a delta, so one product bug fails its own cases, not all later ones).
          for (const z of MUST_STAY_ZERO) expect((after.counters[z] ?? 0) - (before.counters[z] ?? 0), `${label}: ${z} must stay 0`).toBe(0);
          expect(after.protoKeys, `${label}: Object/Array prototype keys (pollution)`).toBe(baseProtoKeys);
          // Nothing the case opened stays open.
          const clean = await waitClean(gw, base, { timeoutMs: 2500, timerSlack: TIMER_SLACK });
          expect(clean.bad ?? [], `${label}: leftovers after its clients left`).toEqual([]);
          if (c.canaryTurn) await canary.waitTurns(1);
          // The canary kept hearing its echo (any failed turn overlapping this case fails it).
          expect(canary.failures.length ? canary.describeFailures() : null, `${label}: canary`).toBeNull();
          expect(performance.now() - canary.lastTurnAt, `${label}: canary has not completed a turn recently`).toBeLessThan(15_000);
          expect(gw.problem(), `${label}: gateway child after the case`).toBeNull();
          ran[category] = (ran[category] ?? 0) + 1;
        }, 30_000 + (c.timeoutMs ?? 0));
      }
    });
  }
}

export { sleep };
