// Child-process script for test/worker.test.ts: spawns worker threads that loop inside the addon
// (Opus, AES, conversion through the compiled package) and terminate()s them mid-work, for several
// rounds; then checks the main thread's addon still works. Runs in its own process so that an
// abort is reported as this process's exit status instead of killing the test runner.
//   argv[2] = 'busy'  terminate once every worker is inside its loop
//             'early' terminate right after spawning (the addon may still be loading)
//   argv[3] = rounds (default 10)
import { createCipheriv } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import * as gw from 'xiaozhi-gateway';

const how = process.argv[2] ?? 'busy';
const rounds = Number(process.argv[3] ?? 10);
const key = new Uint8Array(16).map((_, i) => i * 11);
const input = {
  key,
  ivs: [new Uint8Array(16).fill(0xfe)],
  pcm16k: new Int16Array(16000).map((_, i) => Math.round(5000 * Math.sin(i / 9) + 2000 * Math.sin(i / 3.1))),
  floats: new Float32Array(1000).map((_, i) => Math.sin(i)),
};
const workerUrl = new URL('./native-worker.mjs', import.meta.url);
const codes = [];
for (let round = 0; round < rounds; round++) {
  const workers = [0, 1, 2, 3].map(() => new Worker(workerUrl, { workerData: { mode: 'busy', input } }));
  const errors = [];
  for (const w of workers) w.on('error', (e) => errors.push(e));
  if (how === 'busy') await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  else await new Promise((r) => setTimeout(r, (round % 4) * 5));
  codes.push(...(await Promise.all(workers.map((w) => w.terminate()))));
  if (errors.length) {
    process.stderr.write(`worker errors: ${errors.map((e) => e.stack).join('\n')}\n`);
    process.exit(3);
  }
}
// the main thread's addon still works
const aes = new gw.AesCtr(key);
const data = new Uint8Array(100).map((_, i) => i);
const ours = aes.crypt(input.ivs[0], data);
const ref = createCipheriv('aes-128-ctr', key, input.ivs[0]).update(data);
aes.close();
if (!ref.equals(ours)) {
  process.stderr.write('AES mismatch after terminate\n');
  process.exit(4);
}
const enc = new gw.OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip' });
const dec = new gw.OpusDecoder({ sampleRate: 16000, channels: 1 });
if (dec.decode(enc.encode(input.pcm16k.subarray(0, 960))).length !== 960) process.exit(5);
process.stdout.write(JSON.stringify({ ok: true, codes }) + '\n');
