// Encodes the 24 kHz speech fixture twice with one encoder, for an instruction profile under
// callgrind (instruction counts do not depend on what else the machine is doing, unlike times):
//
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=opus_encode \
//     node bench/opus-profile/encode.mjs ours [predecessor|default]
//   valgrind --tool=callgrind --collect-atstart=no '--toggle-collect=OpusEncoder::Encode(*' \
//     node bench/opus-profile/encode.mjs baseline [predecessor|default]
//   callgrind_annotate --inclusive=no callgrind.out.<pid>
//
// `ours` is the addon's libopus 1.5.2; `baseline` is @discordjs/opus (libopus 1.3.1, a
// devDependency). `predecessor` = audio, complexity 9, auto bitrate; `default` = the gateway's
// downlink default (voip, complexity 6, 32 kbit/s, signal voice). Run `npm run build:ts` first.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [which = 'ours', settings = 'predecessor'] = process.argv.slice(2);
if (!['ours', 'baseline'].includes(which) || !['predecessor', 'default'].includes(settings)) {
  console.error('usage: node bench/opus-profile/encode.mjs ours|baseline [predecessor|default]');
  process.exit(2);
}
const raw = readFileSync(join(root, 'test', 'fixtures', 'generated', 'speech-24000.s16'));
const pcm = new Int16Array(raw.buffer, raw.byteOffset, raw.byteLength >> 1);
const frames = [];
for (let o = 0; o + 1440 <= pcm.length; o += 1440) frames.push(pcm.subarray(o, o + 1440));

let encode;
if (which === 'ours') {
  const { OpusEncoder, DEFAULT_DOWNLINK_ENCODER: d } = await import(join(root, 'dist', 'src', 'index.js'));
  const common = { sampleRate: 24000, channels: 1, vbr: true, vbrConstraint: true, maxBandwidth: 'fullband' };
  const enc = settings === 'default'
    ? new OpusEncoder({ ...common, application: d.application, complexity: d.complexity, bitrate: d.bitrate, signal: d.signal })
    : new OpusEncoder({ ...common, application: 'audio', complexity: 9, signal: 'auto' });
  encode = (f) => enc.encode(f);
} else {
  const { OpusEncoder } = createRequire(join(root, 'package.json'))('@discordjs/opus');
  const enc = new OpusEncoder(24000, 1);
  // CTL numbers from opus_defines.h: SET_APPLICATION (before the first frame), SET_COMPLEXITY,
  // SET_BITRATE, SET_SIGNAL; values VOIP 2048, SIGNAL_VOICE 3001.
  if (settings === 'default') {
    enc.applyEncoderCTL(4000, 2048);
    enc.applyEncoderCTL(4010, 6);
    enc.applyEncoderCTL(4002, 32000);
    enc.applyEncoderCTL(4024, 3001);
  } else {
    enc.applyEncoderCTL(4010, 9);
  }
  encode = (f) => enc.encode(Buffer.from(f.buffer, f.byteOffset, f.byteLength));
}
let n = 0;
for (let pass = 0; pass < 2; pass++) for (const f of frames) { encode(f); n++; }
console.log(`${which} ${settings}: ${n} frames encoded`);
