// Stand-in LiveKit agents in child processes (test/helpers/livekit-agent-process.mjs), for tests
// whose measured process must not hold the agents' Rooms, and for long runs: an rtc-node process
// slows down and grows with every Room it has joined (README "Talk to LiveKit agents"), so a
// pool moves new joins to a fresh child after `rotateAfter` joins and stops the old one once its
// last room is left.
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LivekitCredentials {
  url: string;
  apiKey: string;
  apiSecret: string;
}

/** One child process of stand-in agents, driven over IPC. */
export class AgentProcess {
  readonly #child: ChildProcess;
  readonly #server: LivekitCredentials;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #next = 1;
  readonly ready: Promise<void>;

  constructor(server: LivekitCredentials) {
    this.#server = server;
    this.#child = fork(join(here, 'livekit-agent-process.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, NODE_ENV: 'production' } });
    this.ready = new Promise((resolve, reject) => {
      this.#child.once('error', reject);
      this.#child.on('message', (m: { ready?: boolean; id?: number; ok?: boolean; error?: string; value?: unknown }) => {
        if (m.ready) return resolve();
        const p = this.#pending.get(m.id!);
        if (!p) return;
        this.#pending.delete(m.id!);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(`agent process: ${m.error}`));
      });
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  request(cmd: string, extra: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#child.send({ id, cmd, ...extra });
    });
  }

  /** Joins `room` as a participant of kind AGENT and publishes a microphone (resolves once published). */
  join(room: string): Promise<unknown> {
    return this.request('join', { room, ...this.#server });
  }

  leave(room: string): Promise<unknown> {
    return this.request('leave', { room });
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((r) => this.#child.once('exit', r));
    await Promise.race([this.request('exit'), sleep(10_000)]).catch(() => {});
    await Promise.race([exited, sleep(2000)]);
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL');
  }
}

/** Agent processes in turn: a fresh child every `rotateAfter` joins; a retired one stops when its rooms are left. */
export class AgentPool {
  readonly #server: LivekitCredentials;
  readonly #rotateAfter: number;
  #current: AgentProcess | null = null;
  #joins = 0;
  readonly #owner = new Map<string, AgentProcess>();
  readonly #retired = new Set<AgentProcess>();
  /** Child processes started so far. */
  started = 0;

  constructor(server: LivekitCredentials, rotateAfter: number) {
    this.#server = server;
    this.#rotateAfter = rotateAfter;
  }

  async join(room: string): Promise<void> {
    if (!this.#current || this.#joins >= this.#rotateAfter) {
      if (this.#current) this.#retire(this.#current);
      this.#current = new AgentProcess(this.#server);
      this.#joins = 0;
      this.started++;
    }
    this.#joins++;
    const p = this.#current;
    this.#owner.set(room, p);
    await p.ready;
    await p.join(room);
  }

  /** Leaves `room` (a no-op for a room this pool did not join, or already left). */
  async leave(room: string): Promise<void> {
    const p = this.#owner.get(room);
    if (!p) return;
    this.#owner.delete(room);
    await p.leave(room).catch(() => {});
    if (this.#retired.has(p)) this.#retire(p);
  }

  #retire(p: AgentProcess): void {
    this.#retired.add(p);
    if ([...this.#owner.values()].includes(p)) return;
    this.#retired.delete(p);
    void p.stop();
  }

  async stop(): Promise<void> {
    const all = new Set([...this.#owner.values(), ...this.#retired]);
    if (this.#current) all.add(this.#current);
    this.#owner.clear();
    this.#retired.clear();
    this.#current = null;
    await Promise.all([...all].map((p) => p.stop()));
  }
}
