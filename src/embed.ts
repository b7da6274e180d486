// The embedding API: the gateway inside one's own Node service, with one's own agent if wanted.
//
//   const gw = createGateway({ mqttPort: 1883, publicHost: '192.168.1.10' }, { agent: new MyAgent() });
//   gw.on('session-opened', (s) => console.log('talking to', s.deviceId));
//   await gw.start();
//   ...
//   await gw.stop();
//
// An agent is an AgentBackend (src/agent/agent-backend.ts): it gets a session per device session,
// receives the device's speech as PCM at the pipeline's rate (48 kHz Int16) and answers with PCM
// events; the echo and LiveKit agents are the two built-in implementations. `xiaozhi-gateway start`
// uses this same API.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { AgentBackend } from './agent/agent-backend.js';
import { ConfigError, loadConfig, type GatewayConfig, type GatewayConfigInput } from './config.js';
import { Gateway, type GatewayEvents, type GatewayPorts } from './gateway.js';

export interface CreateGatewayOptions {
  /** Your agent (overrides the config's `agent`); default: the config's echo or LiveKit agent. */
  agent?: AgentBackend;
  /** A pino logger; default: JSON lines on stdout at the config's log level. */
  logger?: Logger;
}

/** A gateway that has not started yet: attach listeners, then start(). */
export class EmbeddedGateway extends EventEmitter<GatewayEvents> {
  readonly config: GatewayConfig;
  readonly #options: CreateGatewayOptions;
  #gateway: Gateway | null = null;
  #starting: Promise<GatewayPorts> | null = null;

  constructor(config: GatewayConfig, options: CreateGatewayOptions) {
    super();
    this.config = config;
    this.#options = options;
  }

  /** Binds every listener and resolves with the bound ports (port 0 in the config binds an ephemeral one). */
  start(): Promise<GatewayPorts> {
    this.#starting ??= Gateway.start(this.config, {
      ...(this.#options.agent ? { agents: this.#options.agent } : {}),
      ...(this.#options.logger ? { logger: this.#options.logger } : {}),
      events: (event, ...args) => (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args),
    }).then((g) => {
      this.#gateway = g;
      return g.ports;
    });
    return this.#starting;
  }

  /** Goodbye to every device, drain, release everything (within the config's shutdownTimeoutMs). */
  async stop(reason = 'shutdown'): Promise<void> {
    if (this.#starting) await this.#starting.catch(() => {});
    await this.#gateway?.stop(reason);
  }

  /** The running gateway (ports, stats, counters, logger); throws before start() has resolved. */
  get gateway(): Gateway {
    if (!this.#gateway) throw Object.assign(new Error('createGateway(): not started yet: await start() first'), { code: 'ERR_GATEWAY_STATE' });
    return this.#gateway;
  }
}

/**
 * Creates a gateway from a config object with the same keys, defaults and validation as the CLI's
 * config file (README "Command line"); invalid input throws a ConfigError naming the key.
 */
export function createGateway(config: GatewayConfigInput = {}, options: CreateGatewayOptions = {}): EmbeddedGateway {
  const loaded = loadConfig({ flags: {}, env: {}, overrides: config });
  // Both need a supervising primary process, which only `xiaozhi-gateway start` runs: refused here
  // rather than quietly ignored.
  if (loaded.workers > 1) throw new ConfigError(`workers: ${loaded.workers} needs the supervisor of \`xiaozhi-gateway start --workers N\`; an embedded gateway is one process (leave workers at 1, or run the CLI)`);
  if (loaded.recycleAfterSessions > 0) throw new ConfigError('recycleAfterSessions needs the supervisor of `xiaozhi-gateway start --recycle-after-sessions K`; an embedded gateway is one process (leave it at 0, or run the CLI)');
  return new EmbeddedGateway(loaded, options);
}
