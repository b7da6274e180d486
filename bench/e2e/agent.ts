// A minimal agent participant for `bench e2e`: joins a device's room with an agent token, says it
// is speaking, and speaks without pause (a modulated tone, never silent) at real time.
import { AudioFrame, AudioSource, LocalAudioTrack, Room, TrackPublishOptions, TrackSource } from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';

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
    await a.room.connect(url, await at.toJwt(), { autoSubscribe: false, dynacast: false });
    const track = LocalAudioTrack.createAudioTrack('agent-voice', a.source);
    await a.room.localParticipant!.publishTrack(track, new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
    await a.room.localParticipant!.setAttributes({ 'lk.agent.state': 'speaking' });
    return a;
  }

  /** Speaks 60 ms frames until stop(); the source's queue paces captureFrame at real time. */
  speak(): void {
    let n = 0;
    this.#done = (async () => {
      while (!this.#stopped) {
        const pcm = new Int16Array(2880);
        for (let i = 0; i < pcm.length; i++, n++) pcm[i] = Math.round((6000 + 3000 * Math.sin((2 * Math.PI * 3 * n) / 48000)) * Math.sin((2 * Math.PI * 220 * n) / 48000));
        await this.source.captureFrame(new AudioFrame(pcm, 48000, 1, pcm.length));
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
