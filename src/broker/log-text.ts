/** Client-supplied strings go into logs truncated: a CONNECT may carry kilobytes of client id. */
export function short(value: string | null | undefined, max = 80): string | undefined {
  if (value === null || value === undefined) return undefined;
  return value.length > max ? value.slice(0, max) + '…' : value;
}
