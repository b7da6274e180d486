// Child-process script for test/worker.test.ts: loads the compiled package, creates native objects,
// uses them, and exits while they are still open. argv[2] says how:
//   exit       process.exit(0) with live objects
//   natural    let the event loop drain (objects still referenced from a global)
//   worker     process.exit(0) while a worker thread is busy inside the addon
import { Worker } from 'node:worker_threads';
import * as gw from 'xiaozhi-gateway';

const how = process.argv[2] ?? 'exit';
const key = new Uint8Array(16).fill(7);
const enc = new gw.OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip' });
const dec = new gw.OpusDecoder({ sampleRate: 16000, channels: 1 });
const aes = new gw.AesCtr(key);
const rs = new gw.Resampler({ inputRate: 16000, outputRate: 48000 });
const win = new gw.packet.ReplayWindow();
const div = new gw.packet.DownlinkIv(new Uint8Array(16).fill(1));
const pcm = new Int16Array(960).map((_, i) => Math.round(3000 * Math.sin(i / 5)));
const p = enc.encode(pcm);
aes.crypt(new Uint8Array(16), p, p);
dec.decode(enc.encode(pcm));
rs.process(pcm);
win.commit(1);
div.next(10, 0);
globalThis.live = [enc, dec, aes, rs, win, div];

if (how === 'exit') {
  process.stdout.write('ok\n');
  process.exit(0);
} else if (how === 'natural') {
  process.stdout.write('ok\n');
} else if (how === 'worker') {
  const w = new Worker(new URL('./native-worker.mjs', import.meta.url), {
    workerData: { mode: 'busy', input: { key, ivs: [new Uint8Array(16)], pcm16k: new Int16Array(16000).map((_, i) => (i * 37) % 3000), floats: new Float32Array(1000) } },
  });
  w.on('message', () => {
    process.stdout.write('ok\n');
    process.exit(0);
  });
  w.on('error', (err) => {
    process.stderr.write(`worker error: ${err.stack}\n`);
    process.exit(3);
  });
}
