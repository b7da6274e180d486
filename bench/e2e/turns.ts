// The conversation every bench e2e session (and every floor room) follows, on one shared clock
// (absolute ms, performance.timeOrigin + performance.now(), same machine): the device talks,
// the agent thinks, the agent answers, the device thinks. Device 40 % of the time, agent 40 %.
// Session i runs the same cycle shifted by i/n of a period, so the machine's load is even.
export const TURN_PERIOD_MS = 7500;
/** Device talk window within the period: [start, end). */
export const DEVICE_TALK: readonly [number, number] = [0, 3000];
/** Agent talk window: answers after the device's turn and a thinking pause. */
export const AGENT_TALK: readonly [number, number] = [3750, 6750];

export interface TurnPlan {
  /** Absolute ms when session 0's cycle starts. */
  t0: number;
  sessions: number;
}

/** Offset of session i's cycle (ms). */
export function phaseOf(plan: TurnPlan, i: number): number {
  return Math.round((i * TURN_PERIOD_MS) / plan.sessions);
}

function position(plan: TurnPlan, i: number, at: number): number {
  const p = (at - plan.t0 - phaseOf(plan, i)) % TURN_PERIOD_MS;
  return p < 0 ? p + TURN_PERIOD_MS : p;
}

export function deviceTalking(plan: TurnPlan, i: number, at: number): boolean {
  const p = position(plan, i, at);
  return p >= DEVICE_TALK[0] && p < DEVICE_TALK[1];
}

/** Ms until session i's next agent turn starts (0 when inside one), and how long is left of it. */
export function agentWindow(plan: TurnPlan, i: number, at: number): { startsInMs: number; leftMs: number } {
  const p = position(plan, i, at);
  if (p >= AGENT_TALK[0] && p < AGENT_TALK[1]) return { startsInMs: 0, leftMs: AGENT_TALK[1] - p };
  const startsInMs = p < AGENT_TALK[0] ? AGENT_TALK[0] - p : TURN_PERIOD_MS - p + AGENT_TALK[0];
  return { startsInMs, leftMs: AGENT_TALK[1] - AGENT_TALK[0] };
}
