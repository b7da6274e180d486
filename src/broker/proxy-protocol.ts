// The PROXY protocol v2 header a TCP load balancer (HAProxy `send-proxy-v2`) writes before the
// client's bytes: it names the device's real address, which the per-IP limits and the UDP address
// binding (PROTOCOL.md §3.2) need. The header is parsed by proxy-protocol-js; here it is only framed
// (its length is in bytes 14-15) and the bytes after it are handed back to the socket for MQTT.
import type net from 'node:net';
import { IPv4ProxyAddress, IPv6ProxyAddress, V2ProxyProtocol } from 'proxy-protocol-js';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const FIXED_LENGTH = 16;
/** The largest address block with TLVs HAProxy sends is far below this; anything longer is refused. */
const MAX_HEADER_LENGTH = FIXED_LENGTH + 1024;

export type ProxyHeaderResult =
  | { ok: true; source?: { address: string; port: number } }
  | { ok: false; reason: string };

/**
 * Reads the header off `socket`, then calls `done` once with the source it names (none for a LOCAL
 * header, e.g. a load balancer's health check: the socket's own peer is the client). The socket is
 * left paused with any bytes after the header put back, ready for the MQTT side to read.
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number, done: (result: ProxyHeaderResult) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  let finished = false;
  const finish = (result: ProxyHeaderResult, rest?: Buffer) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('close', onClose);
    socket.pause();
    if (rest && rest.length > 0) socket.unshift(rest);
    done(result);
  };
  const onClose = () => finish({ ok: false, reason: 'closed before the PROXY header' });
  const timer = setTimeout(() => finish({ ok: false, reason: `no PROXY header within ${timeoutMs} ms` }), timeoutMs);
  const onData = (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const compare = Math.min(buffered.length, SIGNATURE.length);
    if (!buffered.subarray(0, compare).equals(SIGNATURE.subarray(0, compare))) {
      finish({ ok: false, reason: 'the connection does not start with a PROXY protocol v2 signature' });
      return;
    }
    if (buffered.length < FIXED_LENGTH) return;
    const total = FIXED_LENGTH + buffered.readUInt16BE(14);
    if (total > MAX_HEADER_LENGTH) {
      finish({ ok: false, reason: `PROXY header of ${total} bytes is longer than ${MAX_HEADER_LENGTH}` });
      return;
    }
    if (buffered.length < total) return;
    let parsed: V2ProxyProtocol;
    try {
      parsed = V2ProxyProtocol.parse(buffered.subarray(0, total));
    } catch (err) {
      finish({ ok: false, reason: `malformed PROXY header: ${(err as Error).message}` });
      return;
    }
    finish({ ok: true, ...sourceOf(parsed) }, buffered.subarray(total));
  };
  socket.on('data', onData);
  socket.on('close', onClose);
}

function sourceOf(header: V2ProxyProtocol): { source?: { address: string; port: number } } {
  const a = header.proxyAddress;
  if (a instanceof IPv4ProxyAddress) return { source: { address: a.sourceAddress.address.join('.'), port: a.sourcePort } };
  if (a instanceof IPv6ProxyAddress) {
    const bytes = Uint8Array.from(a.sourceAddress.address);
    // An IPv4-mapped source counts as its IPv4 address, as everywhere else (src/net/address.ts).
    if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
      return { source: { address: [...bytes.subarray(12)].join('.'), port: a.sourcePort } };
    }
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
    // The WHATWG URL parser writes the canonical (RFC 5952) form of an IPv6 address.
    const address = new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
    return { source: { address, port: a.sourcePort } };
  }
  // LOCAL (health check) or an unspecified / unix family: the peer itself is the client.
  return {};
}
