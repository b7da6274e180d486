// The client address of an HTTP request behind reverse proxies (OTA behind HAProxy's HTTP
// frontend): X-Forwarded-For is believed only when the hop that wrote it is a configured trusted
// proxy, else anyone could pick the address its rate limit counts under.
import { BlockList, isIP } from 'node:net';
import type http from 'node:http';
import forwarded from 'forwarded';
import { normalizeIp } from './address.js';

/** Parses 'a.b.c.d, 10.0.0.0/8, ::1' into a BlockList; throws naming the entry that is not an address or CIDR block. */
export function trustedProxyList(spec: string): BlockList {
  const list = new BlockList();
  for (const raw of spec.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const prefix = bits === undefined ? undefined : Number(bits);
    if (family === 0 || extra !== undefined || (prefix !== undefined && (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)))) {
      throw new Error(`"${entry}" is not an IP address or CIDR block (e.g. 10.0.0.5 or 10.0.0.0/8)`);
    }
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(address!, type);
    else list.addSubnet(address!, prefix, type);
  }
  return list;
}

function isTrusted(list: BlockList, address: string): boolean {
  const ip = normalizeIp(address);
  const family = isIP(ip);
  return family !== 0 && list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The request's client address: the socket peer, or, while the peer (and each hop before it) is a
 * trusted proxy, the next address X-Forwarded-For names, from the nearest hop outwards.
 */
export function clientAddress(req: http.IncomingMessage, trusted: BlockList | undefined): string {
  const socketAddress = normalizeIp(req.socket.remoteAddress ?? 'unknown');
  if (!trusted) return socketAddress;
  // [socket peer, the last X-Forwarded-For entry, ..., the first one]
  const hops = forwarded(req);
  let address = socketAddress;
  for (let i = 0; i < hops.length - 1; i++) {
    if (!isTrusted(trusted, hops[i]!)) break;
    const next = normalizeIp(hops[i + 1]!);
    if (isIP(next) === 0) break;
    address = next;
  }
  return address;
}
