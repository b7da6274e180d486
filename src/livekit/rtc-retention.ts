// What @livekit/rtc-node keeps after a session has released everything it can: the audio sources
// of rooms the *server* ended.
//
// rtc-node 1.1.0 (FFI 0.12.73): when livekit-server ends a room under a participant (room deleted
// through the RoomService API; seen also around server restarts), the native AudioSource published
// in it is never destroyed, however the session releases: track and source closed, room, participant
// and publication handles dropped, an explicit FFI disconnect, an unpublish first — none of them
// frees it (a bare rtc-node loop shows it: 20 rooms deleted by the server leave 20 sources; 20 rooms
// left by the client leave none). Each retained source keeps libwebrtc's "AudioSourceCapture" task
// queue, a thread that wakes every 10 ms and pushes silence into the dead sender: ≈ 0.26 % of a core
// per retained source, for the life of the process. This is what slows a long-running LiveKit
// process down. It is counted here, from the threads' names, because rtc-node exposes nothing;
// workers are recycled on it (--recycle-retained-sources) and it is exported in /metrics.
import { readdirSync, readFileSync } from 'node:fs';

/** libwebrtc's name for an AudioSource's capture task queue, as the kernel keeps it (15 characters). */
const CAPTURE_THREAD = 'AudioSourceCapt';

/** This process's threads by name (libwebrtc and the FFI name theirs); null where /proc is not available. */
export function threadsByName(): Record<string, number> | null {
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return null;
  }
  const out: Record<string, number> = {};
  for (const t of tasks) {
    try {
      const name = readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
      out[name] = (out[name] ?? 0) + 1;
    } catch {
      // the thread ended while we read
    }
  }
  return out;
}

/** Threads of this process that are AudioSource capture queues; null where /proc is not available. */
export function audioSourceThreads(): number | null {
  const names = threadsByName();
  return names === null ? null : (names[CAPTURE_THREAD] ?? 0);
}

/** Audio sources rtc-node still holds beyond the `open` ones sessions own; null where not measurable. */
export function retainedAudioSources(open: number): number | null {
  const threads = audioSourceThreads();
  return threads === null ? null : Math.max(0, threads - open);
}
