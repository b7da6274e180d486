// A minimal agent participant for `bench e2e`: joins a device's room with an agent token, says it
// is speaking, and speaks without pause (a modulated tone, never silent) at real time. Nothing
// else: it subscribes to nothing, runs no STT/LLM/TTS, and its 60 ms frames are computed once and
// shared by every agent, so N agents cost little more than N published tracks.
import { releaseFfiHandle } from '../../src/livekit/livekit-session.js';
import { AudioFrame, AudioSource, LocalAudioTrack, Room, TrackPublishOptions, TrackSource } from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';

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
    try {
      await a.room.connect(url, await at.toJwt(), { autoSubscribe: false, dynacast: false });
    } catch (err) {
      // A connect the FFI gave up on (its callback answered too late on a busy machine) leaves a
      // wrapper whose handle is gone; GC would later throw 'trying to drop an invalid handle' and
      // kill this process. Release it now, where that error can be caught.
      await a.room.disconnect().catch(() => {});
      releaseFfiHandle(a.room);
      throw err;
    }
    const track = LocalAudioTrack.createAudioTrack('agent-voice', a.source);
    await a.room.localParticipant!.publishTrack(track, new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
    await a.room.localParticipant!.setAttributes({ 'lk.agent.state': 'speaking' });
    return a;
  }

  /** Speaks 60 ms frames until stop(); the source's queue paces captureFrame at real time. */
  speak(): void {
    this.#done = (async () => {
      for (let k = 0; !this.#stopped; k++) {
        await this.source.captureFrame(new AudioFrame(FRAMES[k % FRAMES.length]!, 48000, 1, FRAME));
      }
    })();
  }

  async leave(): Promise<void> {
    this.#stopped = true;
    await this.#done.catch(() => {});
    await this.room.disconnect().catch(() => {});
    await this.source.close().catch(() => {});
  }
}
