// The floor of `bench e2e`: bare @livekit/rtc-node doing the LiveKit work of N gateway sessions and
// nothing else, in its own process so its CPU can be set beside the gateway's. Per room, as a
// LiveKit session does: join with a device token, publish a microphone track (the same publish
// options), capture the device's speech as 60 ms frames at 48 kHz on the device's cadence while
// the device talks (turns.ts), one captureFrame in flight at a time, and subscribe to the agent's
// track, reading it as the gateway does (same sample rate and frame size) and discarding it.
// No MQTT, UDP, Opus, resampling, turn gating or pacing: what the gateway costs beyond this is ours.
import {
  AudioFrame,
  AudioSource,
  AudioStream,
  LocalAudioTrack,
  Room,
  RoomEvent,
  TrackKind,
  type RemoteTrack,
  type RemoteTrackPublication,
} from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';
import { dropFfiLogEvents } from '../../src/livekit/ffi-release.js';
import { AGENT_FRAME_MS, micPublishOptions } from '../../src/livekit/livekit-session.js';
import type { ChildConfig } from './protocol.js';
import { connectRoom, joinInBatches } from './room-join.js';
import { deviceTalking, type TurnPlan } from './turns.js';

export type ToFloor = { type: 'join'; rooms: Array<{ room: string; identity: string }>; agentFrameMs?: number } | { type: 'speak'; plan: TurnPlan } | { type: 'collect' } | { type: 'stop' };
export type FromFloor =
  | { type: 'ready' }
  | { type: 'joined'; count: number }
  | { type: 'report'; captured: number; dropped: number; captureErrors: number; agentFrames: number; subscribed: number }
  | { type: 'error'; message: string };

const RATE = 48000;
const FRAME = 2880; // 60 ms, as the gateway captures a device frame
/** The device's speech as the gateway hands it to LiveKit (bench e2e's uplink tone, decoded to 48 kHz). */
const FRAMES: Int16Array[] = Array.from({ length: 50 }, (_, f) => {
  const pcm = new Int16Array(FRAME);
  for (let i = 0; i < FRAME; i++) {
    const n = (f * FRAME + i) / 3; // the 16 kHz tone's sample index
    pcm[i] = Math.round((5000 + 2500 * Math.sin((2 * Math.PI * 4 * n) / 16000)) * Math.sin((2 * Math.PI * 180 * n) / 16000));
  }
  return pcm;
});
/** The gateway holds at most this much uplink audio waiting for the source (UplinkCapture's maxBufferedMs). */
const MAX_PENDING = 4;

const send = (m: FromFloor) => process.send!(m);
const counts = { captured: 0, dropped: 0, captureErrors: 0, agentFrames: 0, subscribed: 0 };

class FloorRoom {
  readonly room = new Room();
  source: AudioSource | null = null;
  #pending = 0;
  #chain: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #readers: Array<ReadableStreamDefaultReader<unknown>> = [];

  async join(cfg: ChildConfig, room: string, identity: string, frameSizeMs: number): Promise<void> {
    const at = new AccessToken(cfg.apiKey, cfg.apiSecret, { identity });
    at.addGrant({ roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true });
    this.room.on(RoomEvent.TrackPublished, (pub) => this.#subscribe(pub));
    this.room.on(RoomEvent.TrackSubscribed, (track, pub) => this.#read(track, pub, frameSizeMs));
    await connectRoom(this.room, cfg.livekitUrl, await at.toJwt());
    dropFfiLogEvents();
    this.source = new AudioSource(RATE, 1, 200);
    const track = LocalAudioTrack.createAudioTrack('floor-microphone', this.source);
    await this.room.localParticipant!.publishTrack(track, micPublishOptions());
    for (const p of this.room.remoteParticipants.values()) for (const pub of p.trackPublications.values()) this.#subscribe(pub);
  }

  #subscribe(pub: RemoteTrackPublication): void {
    if (pub.kind === TrackKind.KIND_AUDIO && !pub.subscribed) pub.setSubscribed(true);
  }

  #read(track: RemoteTrack, _pub: RemoteTrackPublication, frameSizeMs: number): void {
    if (track.kind !== TrackKind.KIND_AUDIO) return;
    counts.subscribed++;
    const reader = new AudioStream(track, { sampleRate: RATE, numChannels: 1, frameSizeMs }).getReader();
    this.#readers.push(reader);
    void (async () => {
      try {
        for (;;) {
          const { done } = await reader.read();
          if (done) break;
          counts.agentFrames++;
        }
      } catch {}
    })();
  }

  /** The device's cadence: one 60 ms frame every 60 ms while it talks. */
  speak(plan: TurnPlan, index: number): void {
    const start = performance.now();
    let k = 0;
    const tick = (): void => {
      if (deviceTalking(plan, index, performance.timeOrigin + performance.now())) this.#capture(FRAMES[k % FRAMES.length]!);
      k++;
      this.#timer = setTimeout(tick, Math.max(0, start + k * 60 - performance.now()));
    };
    this.#timer = setTimeout(tick, (index * 60) / plan.sessions % 60);
  }

  #capture(pcm: Int16Array): void {
    if (this.#pending >= MAX_PENDING) {
      counts.dropped++;
      return;
    }
    this.#pending++;
    this.#chain = this.#chain.then(() =>
      this.source!.captureFrame(new AudioFrame(pcm, RATE, 1, FRAME)).then(
        () => {
          this.#pending--;
          counts.captured++;
        },
        () => {
          this.#pending--;
          counts.captureErrors++;
        },
      ),
    );
  }

  async leave(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    for (const r of this.#readers) await r.cancel().catch(() => {});
    await this.room.disconnect().catch(() => {});
    await this.source?.close().catch(() => {});
  }
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
  const rooms: FloorRoom[] = [];
  process.on('message', async (m: ToFloor) => {
    try {
      if (m.type === 'join') {
        // rooms[i] is session i of the turn plan, as the agent that joins the same room.
        await joinInBatches(m.rooms, async (r, i) => {
          const fr = new FloorRoom();
          await fr.join(cfg, r.room, r.identity, m.agentFrameMs ?? AGENT_FRAME_MS);
          rooms[i] = fr;
        });
        send({ type: 'joined', count: rooms.length });
      } else if (m.type === 'speak') {
        rooms.forEach((r, i) => r.speak(m.plan, i));
      } else if (m.type === 'collect') {
        send({ type: 'report', ...counts });
      } else if (m.type === 'stop') {
        await Promise.allSettled(rooms.map((r) => r.leave()));
        process.exit(0);
      }
    } catch (err) {
      send({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  });
  send({ type: 'ready' });
}

main().catch((err: Error) => {
  send({ type: 'error', message: err.stack ?? err.message });
  process.exit(1);
});
