// worker_threads entry for test/worker.test.ts: loads the COMPILED package (dist/, resolved through
// the package's own name and its "exports"), runs the native task (or a busy loop to be terminated)
// on workerData and posts the result.
import { parentPort, workerData } from 'node:worker_threads';
import * as gw from 'xiaozhi-gateway';
import { busyLoop, runTask } from './native-task.mjs';

if (workerData.mode === 'busy') {
  busyLoop(gw, workerData.input, () => parentPort.postMessage({ started: true }));
} else {
  const result = runTask(gw, workerData.input);
  parentPort.postMessage({ result, entry: import.meta.resolve('xiaozhi-gateway') });
  // leave a few native objects open on purpose: the environment's teardown must free them
  globalThis.leaked = [
    new gw.OpusEncoder({ sampleRate: 24000, channels: 1, application: 'voip' }),
    new gw.OpusDecoder({ sampleRate: 24000, channels: 2 }),
    new gw.AesCtr(workerData.input.key),
    new gw.Resampler({ inputRate: 48000, outputRate: 24000 }),
  ];
}
