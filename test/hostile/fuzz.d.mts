// Types of fuzz.mjs.
import type { Rng } from '../helpers/prng.mjs';

export interface FuzzSummary {
  seed: number;
  cases: number;
  byKind: { mqtt: number; json: number; udp: number; http: number };
  crashes: number;
  canaryLoss: number;
  leftovers: number;
  errors: number;
  details: string[];
  seconds: number;
  line: string;
  ok: boolean;
}
export function runFuzz(o?: { minutes?: number; seed?: number; workers?: number; log?: (line: string) => void }): Promise<FuzzSummary>;
export function mutateBytes(buf: Buffer, r: Rng, other?: Buffer): Buffer;
export function mutateMqttHeader(pkt: Buffer, r: Rng): Buffer;
export function mutateSequence<T>(list: T[], r: Rng): T[];
export function mutateJson(obj: Record<string, unknown>, r: Rng): string;
