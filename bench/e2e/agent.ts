// A minimal agent participant for `bench e2e`: joins a device's room with an agent token and
// answers in turns (turns.ts): `lk.agent.state` 'speaking', a few seconds of a modulated tone at
// real time, then 'listening' once its audio has played out, as LiveKit Agents do; between turns
// it captures nothing. Nothing else: it subscribes to nothing, runs no STT/LLM/TTS, and its 60 ms
// frames are computed once and shared by every agent, so N agents cost little more than N tracks.
import { AudioFrame, AudioSource, LocalAudioTrack, Room, TrackPublishOptions, TrackSource } from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';
import { connectRoom } from './room-join.js';
import { agentWindow, type TurnPlan } from './turns.js';

const FRAME = 2880; // 60 ms at 48 kHz
const FRAMES: Int16Array[] = (() => {
  // 1 s of tone (50 distinct frames would also do), cyclic: 220 Hz with a 3 Hz envelope.
  const out: Int16Array[] = [];
  for (let f = 0; f < 50; f++) {
    const pcm = new Int16Array(FRAME);
    for (let i = 0; i < FRAME; i++) {
      const n = f * FRAME + i;
      pcm[i] = Math.round((6000 + 3000 * Math.sin((2 * Math.PI * 3 * n) / 48000)) * Math.sin((2 * Math.PI * 220 * n) / 48000));
    }
    out.push(pcm);
  }
  return out;
})();

export class BenchAgent {
  readonly room = new Room();
  readonly source = new AudioSource(48000, 1, 200);
  #stopped = false;
  #done: Promise<void> = Promise.resolve();

  static async join(url: string, apiKey: string, apiSecret: string, roomName: string, identity: string): Promise<BenchAgent> {
    const a = new BenchAgent();
    const at = new AccessToken(apiKey, apiSecret, { identity, name: 'bench agent' });
    at.kind = 'agent';
    at.addGrant({ roomJoin: true, room: roomName, canPublish: true, canSubscribe: false, canPublishData: true });
    await connectRoom(a.room, url, await at.toJwt());
    const track = LocalAudioTrack.createAudioTrack('agent-voice', a.source);
    await a.room.localParticipant!.publishTrack(track, new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
    await a.room.localParticipant!.setAttributes({ 'lk.agent.state': 'listening' });
    return a;
  }

  /** Speaks its turns of session `index` in `plan` until stop(); the source's queue paces captureFrame at real time. */
  speak(plan: TurnPlan, index: number): void {
    this.#done = (async () => {
      let k = 0;
      while (!this.#stopped) {
        const w = agentWindow(plan, index, performance.timeOrigin + performance.now());
        if (w.startsInMs > 0) {
          await new Promise((r) => setTimeout(r, w.startsInMs));
          continue;
        }
        await this.room.localParticipant!.setAttributes({ 'lk.agent.state': 'speaking' });
        const end = performance.now() + w.leftMs;
        while (!this.#stopped && performance.now() < end) {
          await this.source.captureFrame(new AudioFrame(FRAMES[k++ % FRAMES.length]!, 48000, 1, FRAME));
        }
        await this.source.waitForPlayout();
        await this.room.localParticipant!.setAttributes({ 'lk.agent.state': 'listening' });
      }
    })().catch((err: Error) => {
      // One agent whose room went away (the FFI gave up on it on a saturated machine) stops
      // speaking; it must not take every other agent of this process down as an unhandled rejection.
      if (!this.#stopped) process.stderr.write(`bench e2e agents: agent of session ${index} stopped: ${err.message.split('\n')[0]}\n`);
    });
  }

  async leave(): Promise<void> {
    this.#stopped = true;
    await this.#done.catch(() => {});
    await this.room.disconnect().catch(() => {});
    await this.source.close().catch(() => {});
  }
}
