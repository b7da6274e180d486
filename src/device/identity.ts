// Who a connected device is, as the broker established it at CONNECT (client id, credentials and
// socket). A plain type below both the broker, which creates it, and the device sessions, which
// use it, so neither imports the other for it.

export interface DeviceIdentity {
  /** Unique per accepted connection, increasing: tells two connections with one client id apart. */
  readonly connectionId: number;
  readonly clientId: string;
  /** Lower-case 'aa:bb:cc:dd:ee:ff'. */
  readonly mac: string;
  /** Board uuid from the client id; absent for the legacy GID_<group>@@@<mac> form. */
  readonly uuid?: string;
  /** Group without the "GID_" prefix. */
  readonly group: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Keepalive in seconds the device asked for in CONNECT. */
  readonly keepalive: number;
  readonly tls: boolean;
}
