// The cost cuts `bench e2e --ab` can revert in the gateway child, to measure each one's effect as a
// same-run ratio: name → what comes back. The gateway child reads XZ_BENCH_LEGACY (one name).
import type { LivekitSessionOptions } from '../../src/livekit/livekit-session.js';

export const LEGACY: Record<string, string> = {
  frames20: 'agent audio read from LiveKit in 20 ms frames (now 60 ms, one device frame)',
  red: 'microphone published with RED, rtc-node\'s default (now off)',
};

/** LivekitSession options that bring back the named old behaviour. */
export function legacyOptions(name: string | undefined): Partial<LivekitSessionOptions> {
  switch (name) {
    case 'frames20':
      return { agentFrameMs: 20 };
    case 'red':
      return { micRed: true };
    default:
      return {};
  }
}
