// Whether the machine was this test's alone: CPU time of the whole machine (/proc/stat) against the
// CPU time of this process and every process it started (gateway, workers, livekit-server, agents:
// its descendants in /proc). Audio-drop assertions under load mean "the gateway dropped audio with
// the machine it had"; when other work took a large share of the cores (a developer machine, other
// test runs), a drop says nothing about the gateway, and the tests say so loudly instead.
import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';

const TICK_MS = 10;  // USER_HZ = 100 on Linux

function machineTicks(): { busy: number; all: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  const all = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: all - idle, all };
}

/** utime + stime (ticks) of this process and all its descendants alive now, by pid. */
function treeTicks(): Map<number, number> {
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(f[1]));
      ticks.set(Number(d), Number(f[11]) + Number(f[12]));
    } catch {}
  }
  const out = new Map<number, number>();
  for (const pid of ticks.keys()) {
    for (let p: number | undefined = pid, hops = 0; p && hops < 64; p = parent.get(p), hops++) {
      if (p === process.pid) {
        out.set(pid, ticks.get(pid)!);
        break;
      }
    }
  }
  return out;
}

export interface MachineShare {
  /** Machine CPU busy over the interval, in cores. */
  busyCores: number;
  /** This test's process tree, in cores (processes that died meanwhile count up to their last sample). */
  oursCores: number;
  /** Everything else, in cores. */
  otherCores: number;
  cores: number;
}

/**
 * Starts measuring; the returned function ends the interval. Samples every second so that a process
 * that dies meanwhile (a killed worker) still counts up to its last sample.
 */
export function measureMachineShare(): () => MachineShare {
  const m0 = machineTicks();
  const t0 = performance.now();
  const first = treeTicks();
  const last = new Map(first);
  const sample = () => {
    for (const [pid, t] of treeTicks()) last.set(pid, t);
  };
  const timer = setInterval(sample, 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
    sample();
    const m1 = machineTicks();
    const seconds = (performance.now() - t0) / 1000;
    let ours = 0;
    for (const [pid, t] of last) ours += t - (first.get(pid) ?? 0);
    const cores = cpus().length;
    const busyCores = ((m1.busy - m0.busy) / Math.max(1, m1.all - m0.all)) * cores;
    const oursCores = (ours * TICK_MS) / 1000 / seconds;
    return { busyCores, oursCores, otherCores: Math.max(0, busyCores - oursCores), cores };
  };
}

/** Other work took more than `maxShare` of the machine's cores: audio drops do not measure the gateway. */
export function machineShared(s: MachineShare, maxShare = 0.25): boolean {
  return s.otherCores > maxShare * s.cores;
}

export function describeShare(s: MachineShare): string {
  return `machine ${s.busyCores.toFixed(2)} of ${s.cores} cores busy: this test ${s.oursCores.toFixed(2)}, other work ${s.otherCores.toFixed(2)}`;
}
