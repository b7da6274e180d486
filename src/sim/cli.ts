// `xiaozhi-gateway simulate`: simulated stock devices against a running gateway (called from bin/xiaozhi-gateway.ts).
import { existsSync } from 'node:fs';
import { FIRMWARE_PROFILES, LISTENING_MODES, type FirmwareProfileName, type ListeningMode } from './firmware.js';
import { formatProgress, formatSummary } from './report.js';
import { runSimulation, type SimulationOptions } from './simulator.js';

const USAGE = `Usage: xiaozhi-gateway simulate --gateway <OTA URL> [options]

Simulated stock ESP32 xiaozhi devices, byte for byte like the firmware: OTA request, MQTT with the
returned credentials, hello, encrypted UDP audio, listen/abort/goodbye, and the device's own
receive rules (sequence/length checks, 40-packet decode queue) on the downlink. Each device talks,
waits for the reply and measures it. Progress goes to stderr; the summary table (or JSON) to stdout.

Options:
  --gateway URL        OTA URL, e.g. http://127.0.0.1:8003/xiaozhi/ota/ (required)
  --devices N          number of devices (default 1)
  --duration S         seconds to run; then each device finishes its turn and says goodbye (default 30)
  --firmware F         v2.4 (default) or legacy (≤ v2.3: sequence ≥, no length check, crashes on bad hello)
  --mode M             listening mode: auto (default), manual or realtime (server AEC)
  --ramp-ms MS         power devices on spread over MS (default min(10000, 25 × devices))
  --speak-ms MS        speech per turn (default 3000)
  --pause-ms MS        pause between turns (default 1000)
  --barge-in N         interrupt every N-th reply with abort + listen (default 0 = never)
  --barge-in-after MS  interrupt this long after tts start (default 600)
  --turns-per-session N  goodbye and a new hello every N turns (default 0 = one session)
  --audio FILE         raw s16le mono 16 kHz speech to send (default: synthesised speech)
  --decode-threads N   Opus decode threads for the downlink (default: 0 below 20 devices, else 1-2)
  --no-decode          do not decode downlink Opus (no decode-failure drops, no fidelity)
  --reply-timeout-ms MS  listen stop → tts start allowed (default 15000)
  --seed N             device identities and speech signal (default 1)
  --insecure           accept self-signed certificates (https OTA, MQTT TLS on 8883)
  --shared-source-ip   all devices use one source address (default on Linux with a loopback
                       gateway: each device its own 127.x.y.z, as real devices have their own IP)
  --no-gateway-metrics do not scrape the gateway's /metrics
  --json               print the summary as JSON on stdout
  --verbose            log device events to stderr
  -h, --help           this help

Exit code: 0 all sessions fine and no violation, 1 a violation or a session failure, 2 usage error.`;

class UsageError extends Error {}

export function parseSimulateArgs(argv: string[]): (SimulationOptions & { json: boolean; verbose: boolean }) | 'help' {
  const o: SimulationOptions & { json: boolean; verbose: boolean } = { gateway: '', devices: 1, durationS: 30, json: false, verbose: false };
  const num = (flag: string, v: string | undefined, min: number, max: number, integer = true): number => {
    const n = Number(v);
    if (v === undefined || v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
      throw new UsageError(`${flag}: expected ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got ${v ?? 'nothing'}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '-h':
      case '--help':
        return 'help';
      case '--gateway': {
        const v = value();
        if (!v) throw new UsageError('--gateway: expected the OTA URL, e.g. http://127.0.0.1:8003/xiaozhi/ota/');
        let u: URL;
        try {
          u = new URL(v);
        } catch {
          throw new UsageError(`--gateway: '${v}' is not a URL (expected e.g. http://127.0.0.1:8003/xiaozhi/ota/)`);
        }
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--gateway: expected an http(s) URL, got ${u.protocol}`);
        o.gateway = v;
        break;
      }
      case '--devices': o.devices = num(flag, value(), 1, 100_000); break;
      case '--duration': o.durationS = num(flag, value(), 0.1, 86_400, false); break;
      case '--firmware': {
        const v = value();
        if (!(FIRMWARE_PROFILES as readonly string[]).includes(v ?? '')) throw new UsageError(`--firmware: expected ${FIRMWARE_PROFILES.join(' or ')}, got ${v ?? 'nothing'}`);
        o.firmware = v as FirmwareProfileName;
        break;
      }
      case '--mode': {
        const v = value();
        if (!(LISTENING_MODES as readonly string[]).includes(v ?? '')) throw new UsageError(`--mode: expected ${LISTENING_MODES.join(', ')}, got ${v ?? 'nothing'}`);
        o.mode = v as ListeningMode;
        break;
      }
      case '--ramp-ms': o.rampMs = num(flag, value(), 0, 3_600_000); break;
      case '--speak-ms': o.speakMs = num(flag, value(), 60, 600_000); break;
      case '--pause-ms': o.pauseMs = num(flag, value(), 0, 3_600_000); break;
      case '--barge-in': o.abortEvery = num(flag, value(), 0, 1_000_000); break;
      case '--barge-in-after': o.abortAfterMs = num(flag, value(), 0, 600_000); break;
      case '--turns-per-session': o.turnsPerSession = num(flag, value(), 0, 1_000_000); break;
      case '--audio': {
        const v = value();
        if (!v) throw new UsageError('--audio: expected a file of raw s16le mono 16 kHz samples');
        if (!existsSync(v)) throw new UsageError(`--audio: ${v} does not exist`);
        o.audioFile = v;
        break;
      }
      case '--decode-threads': o.decodeThreads = num(flag, value(), 0, 64); break;
      case '--no-decode': o.decode = false; break;
      case '--reply-timeout-ms': o.replyTimeoutMs = num(flag, value(), 100, 600_000); break;
      case '--seed': o.seed = num(flag, value(), 0, 0xffffffff); break;
      case '--insecure': o.insecure = true; break;
      case '--shared-source-ip': o.sourceAddresses = 'off'; break;
      case '--no-gateway-metrics': o.gatewayMetrics = false; break;
      case '--json': o.json = true; break;
      case '--verbose': o.verbose = true; break;
      default:
        throw new UsageError(`unknown option '${a}'`);
    }
  }
  if (!o.gateway) throw new UsageError('--gateway is required, e.g. --gateway http://127.0.0.1:8003/xiaozhi/ota/');
  return o;
}

export async function runSimulateCli(argv: string[]): Promise<number> {
  let opts: ReturnType<typeof parseSimulateArgs>;
  try {
    opts = parseSimulateArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`xiaozhi-gateway simulate: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const tty = process.stderr.isTTY === true;
  let lastLen = 0;
  const summary = await runSimulation({
    ...opts,
    onProgress: (p) => {
      const line = formatProgress(p);
      if (tty) {
        process.stderr.write(`\r${line.padEnd(lastLen)}`);
        lastLen = line.length;
      } else {
        process.stderr.write(line + '\n');
      }
    },
    progressIntervalMs: tty ? 1000 : 5000,
    ...(opts.verbose ? { log: (l: string) => process.stderr.write(`${tty ? '\n' : ''}${l}\n`) } : {}),
  });
  if (tty) process.stderr.write('\n');
  if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  else process.stdout.write(formatSummary(summary));
  return summary.ok ? 0 : 1;
}
