// The package's public API.
// - The native audio core (conversion, resampler, Opus, AES-CTR, packet format, AudioPipeline).
export * from './native/index.js';
// - The gateway, embedded in your own service, with your own agent if you want (src/embed.ts).
export { createGateway, EmbeddedGateway, type CreateGatewayOptions } from './embed.js';
export type { DeviceSummary, GatewayEvents, GatewayPorts } from './gateway.js';
export type { SessionSummary } from './device/session.js';
export { ConfigError, loadConfig, type GatewayConfig, type GatewayConfigInput } from './config.js';
// - The agent interface and its built-in implementation (the LiveKit agent is the config's
//   `agent: 'livekit'`; it loads @livekit/rtc-node only when chosen).
export type { AgentBackend, AgentEvents, AgentSession, AgentSessionInfo, ListenMode } from './agent/agent-backend.js';
export { EchoAgentBackend, type EchoAgentOptions } from './agent/echo-agent.js';
