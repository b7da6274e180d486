// A minimal stand-in agent in a process of its own (test/livekit-resources.test.ts): the process
// whose memory is measured holds only the gateway's sessions, not the agents' Rooms.
// IPC: {id, cmd: 'join', url, apiKey, apiSecret, room} → joins as a participant of kind AGENT
// (lk.agent.state=listening from its token), publishes a microphone track and speaks a little
// (so the session subscribes to it and reads it); {id, cmd: 'leave', room}; {id, cmd: 'count'}.
// Each request is answered with {id, ok, error?, value?}.
import { AudioFrame, AudioSource, LocalAudioTrack, Room, RoomEvent, TrackPublishOptions, TrackSource } from '@livekit/rtc-node';
import { AccessToken } from 'livekit-server-sdk';

// The FFI's log events (every record, trace included), unused: dropped before dispatch, as the
// gateway does (src/livekit/ffi-release.ts), to spare the shared CPU.
function dropLogs() {
  const ffi = globalThis._ffiClientInstance;
  if (!ffi || ffi.__dropLogs) return;
  const emit = ffi.emit;
  ffi.emit = function (e, ev) {
    return ev?.message?.case === 'logs' ? false : emit.call(this, e, ev);
  };
  ffi.__dropLogs = true;
}

/** room name → its agent */
const agents = new Map();

const timeout = (p, ms) => {
  let t;
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
};

async function drop(name) {
  const a = agents.get(name);
  if (!a) return;
  agents.delete(name);
  a.speaking = false;
  await timeout(a.room.disconnect(), 5000).catch(() => {});
  await a.track?.close(false).catch(() => {});
  await a.source.close().catch(() => {});
}

async function join({ url, apiKey, apiSecret, room: name }) {
  const at = new AccessToken(apiKey, apiSecret, { identity: `agent-${name}`.slice(0, 120), attributes: { 'lk.agent.state': 'listening' } });
  at.kind = 'agent';
  at.addGrant({ room: name, roomJoin: true, canPublish: true, canSubscribe: true });
  const room = new Room();
  const source = new AudioSource(48000, 1);
  dropLogs();
  const a = { room, source, track: null, speaking: true };
  agents.set(name, a);
  room.on(RoomEvent.Disconnected, () => {
    if (agents.get(name) === a) void drop(name);
  });
  try {
    await timeout(room.connect(url, await at.toJwt(), { autoSubscribe: false, dynacast: false }), 20000);
    a.track = LocalAudioTrack.createAudioTrack('agent-voice', source);
    await timeout(room.localParticipant.publishTrack(a.track, new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE })), 20000);
  } catch (err) {
    await drop(name);
    throw err;
  }
  // Half a second of a quiet tone, then silence until it leaves (the session reads its audio).
  void (async () => {
    const pcm = new Int16Array(480);
    for (let i = 0; a.speaking && i < 25; i++) {
      for (let k = 0; k < pcm.length; k++) pcm[k] = Math.round(3000 * Math.sin((2 * Math.PI * 440 * (i * 480 + k)) / 48000));
      await source.captureFrame(new AudioFrame(pcm, 48000, 1, 480)).catch(() => {});
    }
  })();
}

process.on('message', async (m) => {
  try {
    let value;
    if (m.cmd === 'join') await join(m);
    else if (m.cmd === 'leave') await drop(m.room);
    else if (m.cmd === 'count') value = agents.size;
    else if (m.cmd === 'exit') {
      await Promise.allSettled([...agents.keys()].map(drop));
      process.send({ id: m.id, ok: true }, () => process.exit(0));
      return;
    }
    process.send({ id: m.id, ok: true, value });
  } catch (err) {
    process.send({ id: m.id, ok: false, error: String(err?.message ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
