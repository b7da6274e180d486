// Deterministic release of what an rtc-node Room holds in the FFI, on every way a session ends.
//
// What @livekit/rtc-node 1.1.0 registers (dist/room.js, audio_stream.js, participant.js, track.js):
// - Room.connect() adds `room.onFfiEvent` to FfiClient (one process-wide emitter: every FFI event,
//   every audio frame of every room, goes to every listener). Only Room.disconnect() removes it, and
//   disconnect() returns at once when the room is no longer connected: a room the *server* ended
//   (room deleted, participant removed, failed reconnection, server gone) keeps its listener, and
//   with it the Room, its participants, publications and tracks, for the life of the process; each
//   of them also costs a call on every later FFI event. detachRoom() removes it (internal field,
//   pinned by test/livekit-resources.test.ts 'rtc-node contract').
// - Room, LocalParticipant, RemoteParticipant, TrackPublication and Track each own an FfiHandle
//   that rtc-node drops only from a GC finalizer (Track.close() for local tracks). A finalizer that
//   finds its handle already dropped by the FFI throws "trying to drop an invalid handle" and ends
//   the process; releasing them here, where the failure is caught, leaves the finalizers nothing.
// - AudioStream: its own FfiClient listener and handle, released by cancel() (reader.cancel()) or
//   an `eos`; AudioSource: its handle, released by close().

/** Releases an rtc-node object's FfiHandle now; false if the FFI had already dropped it. Idempotent. */
export function releaseFfiHandle(obj: unknown): boolean {
  const o = obj as { ffiHandle?: { dispose?(): void }; ffi_handle?: { dispose?(): void } } | null | undefined;
  const h = o?.ffiHandle ?? o?.ffi_handle;
  if (!h?.dispose) return true;
  try {
    h.dispose();
    return true;
  } catch {
    return false;
  }
}

interface FfiEmitter {
  off(event: string, listener: (...args: unknown[]) => void): unknown;
  listeners(event: string): Array<(...args: unknown[]) => void>;
  listenerCount(event: string): number;
}

export function ffiClient(): FfiEmitter | undefined {
  return (globalThis as { _ffiClientInstance?: FfiEmitter })._ffiClientInstance;
}

/** Listeners on rtc-node's FFI event bus: every connected Room, AudioStream and pending request adds one. */
export function ffiListenerCount(): number {
  return ffiClient()?.listenerCount('ffi_event') ?? 0;
}

/** The Room's listener on the FFI event bus (rtc-node internal: Room#onFfiEvent). */
export function roomFfiListener(room: object): ((...args: unknown[]) => void) | undefined {
  const l = (room as { onFfiEvent?: unknown }).onFfiEvent;
  return typeof l === 'function' ? (l as (...args: unknown[]) => void) : undefined;
}

/** Takes a Room off the FFI event bus (see the file comment). True if it was on it. */
export function detachRoom(room: object): boolean {
  const ffi = ffiClient();
  const l = roomFfiListener(room);
  if (!ffi || !l || !ffi.listeners('ffi_event').includes(l)) return false;
  ffi.off('ffi_event', l);
  return true;
}

interface RoomLike {
  localParticipant?: { trackPublications: Map<string, { track?: unknown }> };
  remoteParticipants: Map<string, { trackPublications: Map<string, { track?: unknown }> }>;
}

/**
 * Releases the handles of everything a left (or server-ended) Room still references: remote
 * tracks, publications and participants, local publications and participant, then the room.
 * Returns how many were already gone on the FFI side.
 */
export function releaseRoomHandles(room: RoomLike): number {
  let gone = 0;
  const release = (o: unknown) => {
    if (o && !releaseFfiHandle(o)) gone++;
  };
  for (const p of room.remoteParticipants.values()) {
    for (const pub of p.trackPublications.values()) {
      release(pub.track);
      release(pub);
    }
    release(p);
  }
  const lp = room.localParticipant;
  if (lp) {
    // Local tracks are closed by their owner (LocalAudioTrack.close()).
    for (const pub of lp.trackPublications.values()) release(pub);
    release(lp);
  }
  release(room);
  return gone;
}

// rtc-node starts the FFI with capture_logs = true: the FFI then forwards every log record of every
// level (trace included: each websocket frame, each libwebrtc line) as 'logs' events, which rtc-node
// decodes and hands to every listener on the bus, and no listener uses (rtc-node has no handler for
// them). A Room that is still connecting stores every event it receives (Room#preConnectEvents)
// until its connect answers: a join that takes 15 s to fail held tens of thousands of log records
// (75 000, ~60 MB of heap, in one snapshot of test/livekit-resources.test.ts). They are dropped
// before they are dispatched. Pinned by the 'rtc-node contract' test.
const LOG_FILTER = Symbol.for('xiaozhi.livekit.ffiLogFilter');
let logEventsDropped = 0;

/** FFI 'logs' events dropped since the process started (see above). */
export function ffiLogEventsDropped(): number {
  return logEventsDropped;
}

/** Installs the 'logs' filter on rtc-node's FfiClient once it exists. Idempotent; false if there is no client yet. */
export function dropFfiLogEvents(): boolean {
  const ffi = ffiClient() as (FfiEmitter & { emit(e: string | symbol, ...a: unknown[]): boolean; [LOG_FILTER]?: true }) | undefined;
  if (!ffi) return false;
  if (ffi[LOG_FILTER]) return true;
  const emit = ffi.emit;
  ffi.emit = function (this: unknown, event: string | symbol, ...args: unknown[]): boolean {
    const ev = args[0] as { message?: { case?: string } } | undefined;
    if (event === 'ffi_event' && ev?.message?.case === 'logs') {
      logEventsDropped++;
      return false;
    }
    return emit.call(this, event, ...args);
  };
  ffi[LOG_FILTER] = true;
  return true;
}
