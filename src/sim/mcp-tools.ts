// The device's MCP server (McpServer in the firmware), as far as a gateway's relay can tell: the
// JSON-RPC methods it answers and a few of its common tools. Pure: it turns one request into the
// reply text, or nothing (notifications and malformed requests get no reply, as on the device).
import type { DeviceIdentity } from './ota.js';

/** What the tools read and change on the device. */
export interface McpDeviceState {
  volume: number;
}

export interface McpTool {
  name: string;
  json: string;
  call(args: Record<string, unknown>, device: McpDeviceState): string | Error;
}

/** A few of the firmware's common tools (McpServer::AddCommonTools), enough to exercise a relay. */
export const MCP_TOOLS: McpTool[] = [
  {
    name: 'self.get_device_status',
    json: '{"name":"self.get_device_status","description":"Provides the real-time information of the device, including the current status of the audio speaker, screen, battery, network, etc.\\nUse this tool for: \\n1. Answering questions about current condition (e.g. what is the current volume of the audio speaker?)\\n2. As the first step to control the device (e.g. turn up / down the volume of the audio speaker, etc.)","inputSchema":{"type":"object","properties":{}}}',
    call: (_a, d) => JSON.stringify({ audio_speaker: { volume: d.volume }, screen: { brightness: 75, theme: 'light' }, network: { type: 'wifi', ssid: 'sim', signal: 'strong' } }),
  },
  {
    name: 'self.audio_speaker.set_volume',
    json: '{"name":"self.audio_speaker.set_volume","description":"Set the volume of the audio speaker. If the current volume is unknown, you must call `self.get_device_status` tool first and then call this tool.","inputSchema":{"type":"object","properties":{"volume":{"type":"integer","minimum":0,"maximum":100}},"required":["volume"]}}',
    call: (a, d) => {
      if (typeof a.volume !== 'number') return new Error('Missing valid argument: volume');
      const v = Math.trunc(a.volume);
      if (v < 0 || v > 100) return new Error(`Value is out of range: volume`);
      d.volume = v;
      return 'true';
    },
  },
  {
    name: 'self.screen.set_brightness',
    json: '{"name":"self.screen.set_brightness","description":"Set the brightness of the screen.","inputSchema":{"type":"object","properties":{"brightness":{"type":"integer","minimum":0,"maximum":100}},"required":["brightness"]}}',
    call: (a) => (typeof a.brightness === 'number' ? 'true' : new Error('Missing valid argument: brightness')),
  },
];

/**
 * McpServer::ParseMessage: the JSON-RPC reply to `payload` (a request's `payload` member), or null
 * when the device sends none.
 */
export function mcpReply(payload: Record<string, unknown>, identity: DeviceIdentity, device: McpDeviceState): string | null {
  if (payload.jsonrpc !== '2.0' || typeof payload.method !== 'string') return null;
  const method = payload.method;
  if (method.startsWith('notifications')) return null;
  if (payload.params !== undefined && (typeof payload.params !== 'object' || payload.params === null || Array.isArray(payload.params))) return null;
  if (typeof payload.id !== 'number') return null;
  const id = Math.trunc(payload.id);
  const params = (payload.params ?? {}) as Record<string, unknown>;
  const result = (body: string): string => `{"jsonrpc":"2.0","id":${id},"result":${body}}`;
  const error = (message: string): string => `{"jsonrpc":"2.0","id":${id},"error":{"message":"${message}"}}`;
  if (method === 'initialize') {
    return result(`{"protocolVersion":"2024-11-05","capabilities":{"tools":{}},"serverInfo":{"name":"${identity.board}","version":"${identity.version}"}}`);
  }
  if (method === 'tools/list') return result(`{"tools":[${MCP_TOOLS.map((t) => t.json).join(',')}]}`);
  if (method !== 'tools/call') return error(`Method not implemented: ${method}`);
  const name = params.name;
  if (typeof name !== 'string') return error('Missing name');
  const args = params.arguments;
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) return error('Invalid arguments');
  const tool = MCP_TOOLS.find((t) => t.name === name);
  if (!tool) return error(`Unknown tool: ${name}`);
  const out = tool.call((args ?? {}) as Record<string, unknown>, device);
  if (out instanceof Error) return error(out.message);
  return result(`{"content":[{"type":"text","text":${JSON.stringify(out)}}],"isError":false}`);
}
