// The broker's sockets: a plain TCP listener (optionally behind a load balancer that sends a PROXY
// protocol v2 header first) and an optional TLS listener. Each accepted socket is admitted by
// ConnectionAdmission before anything else reads it, then handed to `attach` (the MQTT side).
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { codedError } from '../native/errors.js';
import { normalizeIp } from '../net/address.js';
import type { BrokerTlsConfig, MqttBrokerLimits } from './broker-config.js';
import type { MqttBrokerStats } from './broker-stats.js';
import type { ConnectionAdmission } from './connection-admission.js';
import { readProxyHeader } from './proxy-protocol.js';

/** Hands an admitted socket to the MQTT side; `remote` is the device's address from a PROXY header. */
export type AttachSocket = (socket: net.Socket, secure: boolean, remote?: { address: string; port: number }) => void;

export interface BrokerListenersOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: BrokerTlsConfig | undefined;
  readonly limits: MqttBrokerLimits;
  readonly proxyProtocol: boolean;
  readonly log: Logger;
  /** The broker's counters, updated in place. */
  readonly counters: MqttBrokerStats;
  readonly admission: ConnectionAdmission;
  readonly attach: AttachSocket;
}

export class BrokerListeners {
  private readonly options: BrokerListenersOptions;
  private server: net.Server | undefined;
  private tlsServer: tls.Server | undefined;

  constructor(options: BrokerListenersOptions) {
    this.options = options;
  }

  /** Binds the listeners; port 0 binds an ephemeral port. Rejects with ERR_BROKER_LISTEN (close() still applies). */
  async listen(): Promise<{ port: number; tlsPort?: number }> {
    const { limits, counters, log, admission, attach } = this.options;
    this.server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    this.server.on('connection', (socket) => {
      if (!this.options.proxyProtocol) {
        if (admission.admit(socket)) attach(socket, false);
        return;
      }
      // Behind a load balancer: the device's own address comes first, in the PROXY header.
      socket.on('error', () => { /* a socket that fails before its header is just closed */ });
      readProxyHeader(socket, limits.connectTimeoutMs, (result) => {
        if (!result.ok) {
          counters.refused.proxyHeader++;
          log.debug({ peer: normalizeIp(socket.remoteAddress ?? 'unknown'), err: result.reason }, 'connection closed: no valid PROXY protocol v2 header');
          socket.destroy();
          return;
        }
        const remote = result.source ?? { address: normalizeIp(socket.remoteAddress ?? 'unknown'), port: socket.remotePort ?? 0 };
        if (admission.admit(socket, remote.address)) attach(socket, false, remote);
      });
    });
    this.server.maxConnections = limits.maxConnections;
    this.server.on('drop', () => { counters.refused.maxConnections++; });
    const port = await this.bind(this.server, this.options.port, 'MQTT');

    const tlsOptions = this.options.tls;
    if (!tlsOptions) return { port };
    this.tlsServer = tls.createServer({
      cert: tlsOptions.cert,
      key: tlsOptions.key,
      minVersion: 'TLSv1.2',
      handshakeTimeout: limits.connectTimeoutMs,
      noDelay: true,
    });
    // Raw sockets are admitted (cap, rate) before the handshake costs anything.
    this.tlsServer.on('connection', (socket: net.Socket) => { admission.admit(socket); });
    this.tlsServer.on('secureConnection', (socket: tls.TLSSocket) => attach(socket, true));
    this.tlsServer.on('tlsClientError', (err, socket) => {
      counters.refused.tlsHandshake++;
      log.debug({ remoteAddress: normalizeIp(socket.remoteAddress ?? 'unknown'), err: err.message }, 'TLS handshake failed');
    });
    this.tlsServer.maxConnections = limits.maxConnections;
    this.tlsServer.on('drop', () => { counters.refused.maxConnections++; });
    const tlsPort = await this.bind(this.tlsServer, tlsOptions.port, 'MQTT over TLS');
    if (tlsPort !== 8883 && tlsOptions.port !== 0) {
      log.warn({ tlsPort }, 'the firmware uses TLS only when the endpoint port is 8883: expose this listener as port 8883');
    }
    return { port, tlsPort };
  }

  /** Stops accepting now; resolves when the listening servers have closed (open connections are not touched). */
  close(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const server of [this.server, this.tlsServer]) {
      if (server?.listening) closing.push(new Promise((resolve) => server.close(() => resolve())));
    }
    return Promise.all(closing).then(() => undefined);
  }

  private bind(server: net.Server, port: number, what: string): Promise<number> {
    const { host, log } = this.options;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(codedError('ERR_BROKER_LISTEN', `${what}: cannot listen on ${host}:${port}: ${err.code ?? err.message}`, err));
      };
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        server.on('error', (err) => log.error({ err: err.message }, `${what} listener error`));
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  }
}
