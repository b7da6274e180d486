// The gateway's pino logger, for a gateway process and for the primary of `--workers N` alike (the
// primary must not load the native addon just to log). Keys and passwords never reach a log line,
// whatever logs them by mistake.
import { pino, type Logger } from 'pino';

export function gatewayLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'xiaozhi-gateway', ...bindings },
    redact: { paths: ['*.key', '*.password', '*.signatureKey', 'udp.key', 'mqtt.password', 'signatureKey'], censor: '[redacted]' },
  });
}
