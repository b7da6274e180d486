// Types for native-task.mjs (plain JS so worker threads run it without a TypeScript loader).
export interface NativeTaskInput {
  pcm16k: Int16Array;
  key: Uint8Array;
  ivs: Uint8Array[];
  payloads: Uint8Array[];
  floats: Float32Array;
  nonce: Uint8Array;
}
export interface NativeTaskOutput {
  packets: Uint8Array[];
  decoded: Int16Array;
  cipher: Uint8Array[];
  s16: Record<string, Int16Array>;
  f32: Float32Array;
  resampled: Int16Array;
  headers: Uint8Array[];
}
export function runTask(gw: unknown, input: NativeTaskInput): NativeTaskOutput;
export function busyLoop(gw: unknown, input: NativeTaskInput, onStarted: () => void): never;
