// The names LiveKit Agents (Python and Node) use on the wire, so an off-the-shelf agent works with a
// device without knowing it is one. Values from livekit/agents `types.py` / agents-js `constants.ts`.

/** Agent participant attribute: 'initializing' | 'listening' | 'thinking' | 'speaking'. */
export const ATTR_AGENT_STATE = 'lk.agent.state';
/** Set by livekit-server on a dispatched agent's participant: the worker's agent name. */
export const ATTR_AGENT_NAME = 'lk.agent_name';

/**
 * Text input to the agent: LiveKit Agents' RoomIO reads text streams on this topic from the linked
 * participant as a user turn (it interrupts the agent and replies; `text_enabled`, on by default).
 */
export const TOPIC_CHAT = 'lk.chat';

/** Text streams carrying transcriptions (user STT and agent speech). */
export const TOPIC_TRANSCRIPTION = 'lk.transcription';
export const ATTR_TRANSCRIBED_TRACK_ID = 'lk.transcribed_track_id';
export const ATTR_SEGMENT_ID = 'lk.segment_id';
export const ATTR_TRANSCRIPTION_FINAL = 'lk.transcription_final';

/**
 * Manual turn control ("push-to-talk") as documented by LiveKit Agents: the agent runs with
 * turn_detection="manual" and registers these RPC methods; `start_turn` also interrupts the agent
 * (session.interrupt() + clear_user_turn()), so it doubles as the interruption request.
 */
export const RPC_START_TURN = 'start_turn';
export const RPC_END_TURN = 'end_turn';
export const RPC_CANCEL_TURN = 'cancel_turn';

export type AgentState = 'initializing' | 'listening' | 'thinking' | 'speaking';

export function parseAgentState(value: string | undefined): AgentState | null {
  return value === 'initializing' || value === 'listening' || value === 'thinking' || value === 'speaking' ? value : null;
}

/** Attributes the gateway sets on the device's participant (readable by the agent). */
export const ATTR_DEVICE_ID = 'xiaozhi.device_id';
export const ATTR_CLIENT_ID = 'xiaozhi.client_id';
export const ATTR_SESSION_ID = 'xiaozhi.session_id';
export const ATTR_FIRMWARE = 'xiaozhi.firmware_version';
export const ATTR_FEATURES = 'xiaozhi.features';
/** Name of the RPC method the device participant registers for MCP (only when the device has MCP). */
export const ATTR_MCP_METHOD = 'xiaozhi.mcp_method';
