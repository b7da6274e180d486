// Embedding xiaozhi-gateway in your own Node program, with your own agent.
//
//   node examples/tone-agent.mjs            (in this repository, after `npm ci`)
//   node tone-agent.mjs                     (in a project that did `npm i xiaozhi-gateway`)
//
// The agent below answers every turn with a one-second 440 Hz tone: a stand-in for your speech
// recognition, LLM and TTS. Point a device (or `npx xiaozhi-gateway simulate`) at the OTA URL the
// gateway logs, press the button, speak, release: the device beeps back.
import { EventEmitter } from 'node:events';
import { pathToFileURL } from 'node:url';
import { createGateway, loadConfig } from 'xiaozhi-gateway';

const RATE = 48000;        // what the gateway hands agents and expects back (AgentSessionInfo.inputSampleRate)
const CHUNK = RATE / 50;   // 20 ms

/** One generated answer: `seconds` of a sine at `hz`, as 20 ms Int16 chunks. */
export function tone(hz = 440, seconds = 1, amplitude = 8000) {
  const chunks = [];
  for (let start = 0; start < seconds * RATE; start += CHUNK) {
    const pcm = new Int16Array(CHUNK);
    for (let i = 0; i < CHUNK; i++) pcm[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * (start + i)) / RATE));
    chunks.push(pcm);
  }
  return chunks;
}

/** An AgentSession (see AgentSession in the package's types): events out, device input in. */
class ToneSession extends EventEmitter {
  #hz;
  constructor(info, hz) {
    super();
    this.info = info;  // deviceId, clientId, sessionId, firmwareVersion, features, inputSampleRate
    this.#hz = hz;
  }

  pushAudio(_pcm, _sampleRate) {
    // The device's speech, decoded: Int16 mono at info.inputSampleRate, every 20 ms while it talks.
    // A real agent feeds its speech recognition here.
  }

  listenStart(_mode) {
    this.emit('state', 'listening');
  }

  listenStop() {
    // The turn is over: answer. The gateway converts, encodes, encrypts and paces the audio for
    // the device (it may come in any chunk size, as fast as you like), then sends `tts stop`.
    this.emit('state', 'speaking');
    this.emit('transcript', { role: 'agent', text: 'beep', final: true });
    for (const chunk of tone(this.#hz)) this.emit('audio', chunk, RATE);
    this.emit('audio-end');
    this.emit('state', 'listening');
  }

  wakeWord(_text) {}
  interrupt() {}
  mcpFromDevice(_payload) {}

  async close(_reason) {
    this.removeAllListeners();
  }
}

/** The AgentBackend: one ToneSession per device session. */
export class ToneAgent {
  name = 'tone';
  constructor(hz = 440) {
    this.hz = hz;
  }
  async createSession(info) {
    return new ToneSession(info, this.hz);
  }
  async close() {}
}

// Run as a program: a gateway with the tone agent, configured like `xiaozhi-gateway start` from the
// XIAOZHI_* environment (default ports MQTT 1883, UDP 8888, HTTP 8003).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const gw = createGateway(loadConfig({ overrides: { logLevel: 'warn' } }), { agent: new ToneAgent() });
  gw.on('device-connected', (d) => console.log(`device ${d.deviceId} connected from ${d.remoteAddress}`));
  gw.on('session-opened', (s) => console.log(`session ${s.sessionId} opened for ${s.deviceId}`));
  gw.on('session-closed', (s, reason) => console.log(`session ${s.sessionId} closed: ${reason}`));
  const ports = await gw.start();
  console.log(`gateway up: OTA http://${gw.config.publicHost}:${ports.http}/xiaozhi/ota/, MQTT ${ports.mqtt}, UDP ${ports.udp}`);
  process.once('SIGINT', () => void gw.stop('SIGINT'));
  process.once('SIGTERM', () => void gw.stop('SIGTERM'));
}
