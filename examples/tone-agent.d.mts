// Types of examples/tone-agent.mjs (for the repository's own type check; users need none).
import type { AgentBackend, AgentSession, AgentSessionInfo } from '../src/index.js';

export declare function tone(hz?: number, seconds?: number, amplitude?: number): Int16Array[];

export declare class ToneAgent implements AgentBackend {
  readonly name: string;
  hz: number;
  constructor(hz?: number);
  createSession(info: AgentSessionInfo): Promise<AgentSession>;
  close(): Promise<void>;
}
