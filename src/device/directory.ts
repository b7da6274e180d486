// The device directory an operator's back end uses (GET /devices, POST /devices/{id}/messages):
// which devices are connected, where, in which session state, and a way to push a JSON message to
// one wherever it is. Without Redis it is this gateway's own connections (LocalDirectory); with
// `--redis-url` it spans every instance and worker (RedisDeviceDirectory, directory-redis.ts); with
// `--workers N` and no Redis a worker asks the primary, which asks every worker (src/cluster/).
import { hostname } from 'node:os';

/** One connected device as GET /devices lists it. */
export interface DirectoryEntry {
  /** Device MAC, lower case with colons (the OTA Device-Id). */
  deviceId: string;
  clientId: string;
  /** The gateway instance (one `start` command: a primary with its workers, or one process). */
  instance: string;
  worker: number;
  /** Audio session state: none, opening, idle, listening, speaking. */
  session: string;
  firmware?: string;
  /** ISO 8601 time of the MQTT connection. */
  connectedSince: string;
}

/** This instance's name in the directory: configured, else the host and the primary's pid (which names all its workers together). */
export function instanceIdOf(config: { instanceId?: string | undefined }, clustered: boolean): string {
  return config.instanceId ?? `${hostname()}-${clustered ? process.ppid : process.pid}`;
}

/** A device connected to this process, as the gateway reports it to its directory. */
export interface LocalDevice {
  deviceId: string;
  clientId: string;
  connectionId: number;
  session: string;
  firmware?: string;
  /** Wall-clock milliseconds of the connection (ordering connections across instances). */
  connectedAt: number;
}

/** What the directory may ask of the gateway process it runs in. */
export interface LocalDevices {
  list(): LocalDevice[];
  find(deviceId: string): LocalDevice | undefined;
  /** Pushes a JSON message to a device connected here; false if it is not (any more). */
  send(clientId: string, message: object): boolean;
  /** Closes this connection if it is still the one named (a takeover decided elsewhere). */
  close(clientId: string, connectionId: number): boolean;
}

/** 'offline': no live connection anywhere; 'unavailable': cannot tell (Redis down and not connected here). */
export type DeliveryResult = 'delivered' | 'offline' | 'unavailable';

export interface DeviceDirectory {
  list(): Promise<DirectoryEntry[]>;
  deliver(deviceId: string, message: object): Promise<DeliveryResult>;
}

export function toEntry(d: LocalDevice, instance: string, worker: number): DirectoryEntry {
  return {
    deviceId: d.deviceId, clientId: d.clientId, instance, worker, session: d.session,
    ...(d.firmware ? { firmware: d.firmware } : {}),
    connectedSince: new Date(d.connectedAt).toISOString(),
  };
}

/** The directory of one gateway process without Redis: its own connections. */
export class LocalDirectory implements DeviceDirectory {
  constructor(private readonly local: LocalDevices, private readonly instance: string, private readonly worker: number) {}

  async list(): Promise<DirectoryEntry[]> {
    return this.local.list().map((d) => toEntry(d, this.instance, this.worker));
  }

  async deliver(deviceId: string, message: object): Promise<DeliveryResult> {
    const d = this.local.find(deviceId);
    return d && this.local.send(d.clientId, message) ? 'delivered' : 'offline';
  }
}
