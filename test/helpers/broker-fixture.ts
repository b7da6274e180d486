// Shared set-up for tests that run the real embedded broker: a pino logger that captures every line
// (so tests can assert no secret is ever logged), device credentials, mqtt.js connections, and
// waiting for typed broker events.
import { execFileSync, spawnSync } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino, { type Logger } from 'pino';
import { buildClientId, issueCredentials } from '../../src/device/credentials.js';
import { MqttBroker, type MqttBrokerOptions } from '../../src/broker/mqtt-broker.js';

export const SIGNATURE_KEY = 'test-signature-key-3b9f1c0e7d';

export interface CapturingLogger {
  logger: Logger;
  lines: string[];
}

/** A pino logger at debug level writing every JSON line into `lines`. */
export function capturingLogger(): CapturingLogger {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => { lines.push(line); } });
  return { logger, lines };
}

export interface Device {
  mac: string;
  uuid: string;
  clientId: string;
  username: string;
  password: string;
}

let deviceCounter = 0;

/** A distinct device (MAC and uuid) with signed credentials. */
export function makeDevice(signatureKey = SIGNATURE_KEY, group = 'test'): Device {
  const n = ++deviceCounter;
  const hex = n.toString(16).padStart(4, '0');
  const mac = `02:00:00:00:${hex.slice(0, 2)}:${hex.slice(2)}`;
  const uuid = `5f0c8a2e-1b3d-4e6f-8a9b-${n.toString(16).padStart(12, '0')}`;
  const clientId = buildClientId({ group, mac, uuid });
  const { username, password } = issueCredentials({ clientId, remoteIp: '127.0.0.1', signatureKey });
  return { mac, uuid, clientId, username, password };
}

export interface RunningBroker {
  broker: MqttBroker;
  port: number;
  tlsPort?: number;
  logs: string[];
}

export async function startBroker(options: Partial<MqttBrokerOptions> = {}): Promise<RunningBroker> {
  const { logger, lines } = capturingLogger();
  const broker = new MqttBroker({
    port: 0,
    host: '127.0.0.1',
    auth: { mode: 'signature', signatureKey: SIGNATURE_KEY },
    logger,
    ...options,
  });
  const ports = await broker.start();
  return { broker, port: ports.port, ...(ports.tlsPort !== undefined ? { tlsPort: ports.tlsPort } : {}), logs: lines };
}

/** Connects with mqtt.js as a device would (MQTT 3.1.1, clean session, no reconnect). */
export async function connectDevice(port: number, device: Pick<Device, 'clientId' | 'username' | 'password'>, extra: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: device.clientId,
    username: device.username,
    password: device.password,
    protocolVersion: 4,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    connectTimeout: 3000,
    ...extra,
  }, false);
}

/** Connects with mqtt.js and resolves with the CONNACK error code (rejects if the connection succeeds). */
export function connectExpectingRefusal(port: number, opts: IClientOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: 3000, ...opts });
    client.on('connect', () => {
      client.end(true);
      reject(new Error('connection was accepted'));
    });
    client.on('error', (err: Error & { code?: number }) => {
      client.end(true);
      resolve(err.code ?? -1);
    });
    client.on('close', () => {
      setTimeout(() => resolve(-1), 50);
    });
  });
}

/** Resolves with the arguments of the next `event` matching `pred`. */
export function nextEvent<A extends unknown[]>(emitter: EventEmitter, event: string, pred: (...args: A) => boolean = () => true, timeoutMs = 3000): Promise<A> {
  return new Promise((resolve, reject) => {
    const onEvent = (...args: unknown[]): void => {
      if (!pred(...(args as A))) return;
      clearTimeout(timer);
      emitter.off(event, onEvent);
      resolve(args as A);
    };
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
    }, timeoutMs);
    emitter.on(event, onEvent);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Makes sure Debian's mosquitto-clients is installed: installs it with apt-get when missing and we
 * are root; otherwise fails with the command to run. Never skips.
 */
export function ensureMosquittoClients(): string {
  const which = spawnSync('sh', ['-c', 'command -v mosquitto_pub'], { encoding: 'utf8' });
  if (which.status === 0) return which.stdout.trim();
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error('mosquitto_pub is required (a second MQTT implementation for the broker tests); install it: sudo apt-get install -y mosquitto-clients');
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let install = spawnSync('apt-get', ['install', '-y', '-qq', 'mosquitto-clients'], { stdio: 'inherit', env });
  if (install.status !== 0) {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    install = spawnSync('apt-get', ['install', '-y', '-qq', 'mosquitto-clients'], { stdio: 'inherit', env });
  }
  if (install.status !== 0) throw new Error(`apt-get install -y mosquitto-clients failed (exit ${install.status})`);
  const again = spawnSync('sh', ['-c', 'command -v mosquitto_pub'], { encoding: 'utf8' });
  if (again.status !== 0) throw new Error('mosquitto_pub still not on PATH after installing mosquitto-clients');
  return again.stdout.trim();
}
