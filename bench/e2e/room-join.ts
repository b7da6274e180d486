// Joining LiveKit rooms from the bench's own participants (the agents child, agent.ts; the floor
// child, floor.ts): a connect that cleans up after itself when it fails, and the joins in batches.
import type { Room } from '@livekit/rtc-node';
import { releaseFfiHandle } from '../../src/livekit/ffi-release.js';

/** Rooms joined at once by one child; the next batch starts when this one is in. */
const JOIN_BATCH = 5;

/** Connects `room` with `token` (no auto-subscribe, no dynacast); a failed connect is released before it rethrows. */
export async function connectRoom(room: Room, url: string, token: string): Promise<void> {
  try {
    await room.connect(url, token, { autoSubscribe: false, dynacast: false });
  } catch (err) {
    // A connect the FFI gave up on (its callback answered too late on a busy machine) leaves a
    // wrapper whose handle is gone; GC would later throw 'trying to drop an invalid handle' and
    // kill this process. Release it now, where that error can be caught.
    await room.disconnect().catch(() => {});
    releaseFfiHandle(room);
    throw err;
  }
}

/** Runs `join` for every room, JOIN_BATCH at a time; `index` is the room's place in `rooms`. */
export async function joinInBatches<R>(rooms: readonly R[], join: (room: R, index: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < rooms.length; i += JOIN_BATCH) {
    await Promise.all(rooms.slice(i, i + JOIN_BATCH).map((r, k) => join(r, i + k)));
  }
}
