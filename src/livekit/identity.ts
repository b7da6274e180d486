// Who a device is in LiveKit: room name from the configured template, participant identity and
// name derived from the device, attributes from its hello, and the access token that carries them
// (with the agent dispatch in the token's room configuration when so configured).
import { AccessToken, RoomAgentDispatch, RoomConfiguration } from 'livekit-server-sdk';
import type { AgentSessionInfo } from '../agent/agent-backend.js';
import { ATTR_CLIENT_ID, ATTR_DEVICE_ID, ATTR_FEATURES, ATTR_FIRMWARE, ATTR_MCP_METHOD, ATTR_SESSION_ID } from './conventions.js';

/** MAC without separators, lower case: safe in room names and identities. */
export function compactMac(deviceId: string): string {
  return deviceId.toLowerCase().replace(/[^0-9a-f]/g, '');
}

const PLACEHOLDER = /\{(device|deviceId|clientId|session)\}/g;

/** Expands {device} {deviceId} {clientId} {session}; an unknown {placeholder} is a config error. */
export function roomName(template: string, info: Pick<AgentSessionInfo, 'deviceId' | 'clientId' | 'sessionId'>): string {
  const unknown = template.replace(PLACEHOLDER, '').match(/\{[^}]*\}/);
  if (unknown) throw Object.assign(new Error(`livekitRoomTemplate: unknown placeholder ${unknown[0]} (use {device}, {deviceId}, {clientId}, {session})`), { code: 'ERR_CONFIG' });
  return template.replace(PLACEHOLDER, (_m, k: string) => {
    switch (k) {
      case 'device': return compactMac(info.deviceId);
      case 'deviceId': return info.deviceId;
      case 'clientId': return info.clientId;
      default: return info.sessionId;
    }
  });
}

export function participantIdentity(info: Pick<AgentSessionInfo, 'deviceId'>): string {
  return `xiaozhi-${compactMac(info.deviceId)}`;
}

export function participantName(info: Pick<AgentSessionInfo, 'deviceId'>): string {
  return `ESP32 ${info.deviceId}`;
}

export function participantAttributes(info: AgentSessionInfo, mcpMethod: string | null): Record<string, string> {
  const attrs: Record<string, string> = {
    [ATTR_DEVICE_ID]: info.deviceId,
    [ATTR_CLIENT_ID]: info.clientId,
    [ATTR_SESSION_ID]: info.sessionId,
    [ATTR_FEATURES]: JSON.stringify(info.features ?? {}),
  };
  if (info.firmwareVersion) attrs[ATTR_FIRMWARE] = info.firmwareVersion;
  if (mcpMethod) attrs[ATTR_MCP_METHOD] = mcpMethod;
  return attrs;
}

export interface TokenOptions {
  apiKey: string;
  apiSecret: string;
  room: string;
  info: AgentSessionInfo;
  mcpMethod: string | null;
  /** Dispatch this agent when the room is created (token room configuration). */
  dispatchAgentName?: string;
  /** Lifetime; the server refreshes tokens of connected participants, this covers reconnects. */
  ttl?: string;
}

export async function deviceToken(o: TokenOptions): Promise<string> {
  const at = new AccessToken(o.apiKey, o.apiSecret, {
    identity: participantIdentity(o.info),
    name: participantName(o.info),
    attributes: participantAttributes(o.info, o.mcpMethod),
    ttl: o.ttl ?? '6h',
  });
  at.addGrant({ roomJoin: true, room: o.room, canPublish: true, canSubscribe: true, canPublishData: true });
  if (o.dispatchAgentName) {
    const config = new RoomConfiguration({
      agents: [new RoomAgentDispatch({ agentName: o.dispatchAgentName, metadata: dispatchMetadata(o.info) })],
    });
    // The claim is JSON.stringify'd, and protobuf-es' toJSON() writes every field with its default
    // (e.g. restartPolicy, added in newer protocol versions); livekit-server parses the claim
    // strictly and rejects the token ("unknown field") when it predates a field. Only what is set.
    Object.defineProperty(config, 'toJSON', { value: () => config.toJson(), enumerable: false });
    at.roomConfig = config;
  }
  return at.toJwt();
}

/** Job metadata for the agent (ctx.job.metadata): which device it is talking to. */
export function dispatchMetadata(info: AgentSessionInfo): string {
  return JSON.stringify({ source: 'xiaozhi-gateway', device_id: info.deviceId, session_id: info.sessionId, features: info.features ?? {}, ...(info.firmwareVersion ? { firmware_version: info.firmwareVersion } : {}) });
}
