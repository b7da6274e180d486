// Source addresses as the limits see them. IPv4-mapped IPv6 counts as its IPv4 address; a native
// IPv6 address counts as its /64, because one host is routinely handed a whole /64 and can pick any
// address in it (a per-address limit would be no limit at all).
import { isIPv6 } from 'node:net';

/** '::ffff:1.2.3.4' -> '1.2.3.4'; anything else unchanged. */
export function normalizeIp(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** The key per-IP limits count under: the IPv4 address, or the IPv6 /64 prefix ('2001:db8:1:2::/64'). */
export function ipLimitKey(address: string): string {
  const ip = normalizeIp(address);
  if (!isIPv6(ip)) return ip;
  const groups = expandIpv6(ip);
  return groups ? `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64` : ip;
}

function expandIpv6(ip: string): number[] | null {
  const zone = ip.indexOf('%');
  const bare = zone >= 0 ? ip.slice(0, zone) : ip;
  const [head, tail] = bare.includes('::') ? bare.split('::', 2) as [string, string] : [bare, null];
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  if (tail === null) return left.length === 8 ? left : null;
  const right = parse(tail);
  const fill = 8 - left.length - right.length;
  if (fill < 0) return null;
  return [...left, ...new Array<number>(fill).fill(0), ...right];
}
