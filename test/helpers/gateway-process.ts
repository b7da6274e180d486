// The compiled CLI (dist/bin/xiaozhi-gateway.js `start …`) in its own process, as deployed: spawned,
// its JSON log lines collected from stdout (and every other line, stderr included, kept as text),
// started once its 'ready' line arrives. With --workers that line is the primary's (the workers
// log 'worker ready'), and it names the worker pids and UDP ports.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const cli = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'dist', 'bin', 'xiaozhi-gateway.js');

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/** The 'ready' line; `workers` only with --workers (the primary's line). */
export type ReadyLine = LogLine & {
  ports: { mqtt: number; http: number; udp: number | number[] };
  workers?: Array<{ worker: number; pid: number; udp: number }>;
};

/** The primary's ready line of `start --workers N`: one UDP port per worker. */
export type WorkersReadyLine = ReadyLine & { ports: { udp: number[] }; workers: Array<{ worker: number; pid: number; udp: number }> };

export interface GatewayProcessOptions {
  env?: NodeJS.ProcessEnv;
  /** Its own process group (stop()'s SIGKILL then reaches the workers too, as a machine that dies). */
  detached?: boolean;
  /** Started under `ulimit -c 0` (a test that makes it abort leaves no core file behind). */
  noCoreDump?: boolean;
  /** Which log lines to keep in `logs` (default all); the ready line is seen either way. */
  keep?: (line: LogLine) => boolean;
  /** Also write its stderr to this process's stderr (as `stdio: inherit` would). */
  echoStderr?: boolean;
  readyTimeoutMs?: number;
}

export interface GatewayProcess {
  child: ChildProcess;
  ready: ReadyLine;
  /** The JSON log lines of stdout, in order (those `keep` accepts). */
  logs: LogLine[];
  /** Every line that is not a JSON log line: stderr, and anything else on stdout. */
  otherLines: string[];
  /** How it ended; null while it runs. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  /** The first kept log line `pred` accepts, now or when it arrives. */
  waitLog(pred: (l: LogLine) => boolean, timeoutMs: number, what: string): Promise<LogLine>;
  /** Resolves when the process has exited (at once if it has). */
  exited(): Promise<void>;
  /** SIGTERM (a graceful drain), then SIGKILL (to the group when detached) after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** The last lines it wrote, for a failure message. */
function tail(logs: LogLine[], other: string[], n = 20): string {
  const lines = [...logs.slice(-n).map((l) => JSON.stringify(l)), ...other.slice(-n)];
  return lines.length ? `\n${lines.join('\n').slice(-4000)}` : ' (no output)';
}

/** Starts `xiaozhi-gateway start …args` and resolves once its ready line arrives. */
export async function startGatewayProcess(args: string[], options: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const argv = [cli, 'start', ...args];
  const child = options.noCoreDump
    ? spawn('/bin/sh', ['-c', 'ulimit -c 0; exec "$@"', 'sh', process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env, detached: options.detached })
    : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env, detached: options.detached });
  const keep = options.keep ?? (() => true);
  const waiters = new Set<(l: LogLine) => void>();
  let onReady: ((l: ReadyLine) => void) | undefined;
  const exitWaiters: Array<() => void> = [];

  const gw: GatewayProcess = {
    child,
    ready: undefined as unknown as ReadyLine,
    logs: [],
    otherLines: [],
    exit: null,
    waitLog(pred, timeoutMs, what) {
      const found = gw.logs.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolveLine, reject) => {
        const check = (l: LogLine) => {
          if (!pred(l)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolveLine(l);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    exited() {
      return gw.exit ? Promise.resolve() : new Promise((r) => exitWaiters.push(r));
    },
    async stop(graceMs = 15_000) {
      if (gw.exit) return;
      child.kill('SIGTERM');
      const gone = await Promise.race([gw.exited().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), graceMs))]);
      if (gone) return;
      try {
        if (options.detached) process.kill(-child.pid!, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
      await gw.exited();
    },
  };

  child.once('exit', (code, signal) => {
    gw.exit = { code, signal };
    for (const r of exitWaiters.splice(0)) r();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let l: LogLine;
    try {
      l = JSON.parse(line) as LogLine;
    } catch {
      gw.otherLines.push(line);
      return;
    }
    if (l.msg === 'ready') onReady?.(l as ReadyLine);
    if (!keep(l)) return;
    gw.logs.push(l);
    for (const check of [...waiters]) check(l);
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    gw.otherLines.push(line);
    if (options.echoStderr) process.stderr.write(`${line}\n`);
  });

  const timeoutMs = options.readyTimeoutMs ?? 60_000;
  try {
    gw.ready = await new Promise<ReadyLine>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`the gateway wrote no ready line within ${timeoutMs} ms:${tail(gw.logs, gw.otherLines)}`)), timeoutMs);
      onReady = (l) => {
        clearTimeout(timer);
        resolveReady(l);
      };
      // Its last lines may still be in the pipes when it exits: read them first.
      child.once('close', () => {
        clearTimeout(timer);
        reject(new Error(`the gateway exited before it was ready (code ${gw.exit?.code}, signal ${gw.exit?.signal}):${tail(gw.logs, gw.otherLines)}`));
      });
    });
  } catch (err) {
    if (!gw.exit) {
      try {
        if (options.detached) process.kill(-child.pid!, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    throw err;
  } finally {
    onReady = undefined;
  }
  return gw;
}
