// Progress line and summary table of a simulation run.
import { DROP_REASON_LABELS, DROP_REASONS } from './receiver.js';
import type { SimulationProgress, SimulationSummary } from './simulator.js';
import { FAILURE_KINDS, FAILURE_LABELS, type Distribution } from './stats.js';

const fmtInt = (n: number): string => n.toLocaleString('en-US');
const mb = (b: number | null | undefined): string => (b === null || b === undefined ? 'n/a' : `${(b / 1048576).toFixed(1)} MB`);
const pct = (p: number | null | undefined): string => (p === null || p === undefined ? 'n/a' : `${p.toFixed(1)} %`);
const ms = (v: number | null): string => (v === null ? 'n/a' : `${Math.round(v)}`);

export function formatProgress(p: SimulationProgress): string {
  const parts = [
    `[${p.elapsedS.toFixed(0).padStart(4)}s/${p.durationS}s ${p.phase}]`,
    `mqtt ${p.mqttConnected}/${p.devices}`,
    `in session ${p.inSession}`,
    `turns ${fmtInt(p.turnsCompleted)}`,
    `latency p50 ${p.latencyP50Ms === null ? '-' : `${Math.round(p.latencyP50Ms)} ms`}`,
    `up ${fmtInt(p.uplinkPackets)} / down ${fmtInt(p.downlinkDatagrams)} pkts`,
    `drops ${fmtInt(p.deviceDrops)}`,
    `violations ${p.violations}`,
    `failures ${p.failures}`,
  ];
  if (p.gatewayCpuPercent !== null || p.gatewayRssBytes !== null) parts.push(`gw ${pct(p.gatewayCpuPercent)} ${mb(p.gatewayRssBytes)}`);
  return parts.join('  ');
}

function dist(d: Distribution, unit: string): string {
  if (d.count === 0) return 'n/a (no samples)';
  return `${ms(d.p50)} / ${ms(d.p99)} ${unit}  (max ${ms(d.max)}, n=${d.count})`;
}

export function formatSummary(s: SimulationSummary): string {
  const rows: Array<[string, string] | null> = [];
  const row = (k: string, v: string): void => void rows.push([k, v]);
  const c = s.config;
  row('sessions opened (hello replies)', `${fmtInt(s.sessions.opened)}  (${s.sessions.devicesWithSession}/${c.devices} devices; ${s.sessions.helloSent} hello sent; closed by server ${s.sessions.closedByServer}, by device ${s.sessions.closedByDevice})`);
  row('turns completed / started', `${fmtInt(s.turns.completed)} / ${fmtInt(s.turns.started)}`);
  const from = c.latencyFrom === 'end of speech' ? 'end of speech (server VAD included)' : 'listen stop';
  row('round-trip audio latency p50 / p99', dist(s.latencyMs, 'ms') + `  ${from} → first reply audio`);
  row('tts start latency p50 / p99', dist(s.ttsStartMs, 'ms') + `  ${from} → tts start`);
  rows.push(null);
  row('uplink packets', `${fmtInt(s.uplink.packets)}  (${mb(s.uplink.bytes)})`);
  row('downlink packets received', `${fmtInt(s.downlink.datagrams)}  (${mb(s.downlink.bytes)}; played ${fmtInt(s.downlink.played)})`);
  row('downlink packet loss', `${fmtInt(s.downlink.lost)}  (${s.downlink.lossPercent.toFixed(2)} %, sequence gaps)`);
  row('downlink reorder / duplicates', `${fmtInt(s.downlink.reordered)} (${s.downlink.reorderPercent.toFixed(2)} %) / ${fmtInt(s.downlink.duplicates)}`);
  row('device decode queue, max depth', `${s.downlink.maxQueueDepth} of 40`);
  row('packets the device would drop', fmtInt(s.deviceDrops.total));
  for (const r of DROP_REASONS) {
    if (s.deviceDrops[r] > 0 || ['before-tts-start', 'after-tts-stop', 'bad-type', 'length-mismatch', 'old-sequence', 'decode', 'queue-overflow'].includes(r)) {
      row(`  ${DROP_REASON_LABELS[r]}`, fmtInt(s.deviceDrops[r]));
    }
  }
  row('tts stop before last audio (must be 0)', `${s.violations.ttsStopBeforeLastAudio}`);
  if (s.abort.bargeIns > 0) {
    row('barge-ins: abort → last audio p50 / p99', dist(s.abort.stopDelayMs, 'ms') + `  (${s.abort.packetsLaterThanOneFrame} packets > 1 frame late)`);
  }
  const f = s.echo.fidelity;
  row('echo fidelity (envelope correlation)', f.count ? `mean ${f.mean?.toFixed(3)}, min ${f.min?.toFixed(3)} (n=${f.count})` : 'n/a');
  const e = s.echo.completeness;
  if (e.count) row('echo completeness (reply/sent frames)', `p50 ${e.p50?.toFixed(0)} %, min ${e.min?.toFixed(0)} %`);
  if (s.mcp.requests) row('MCP requests / replies', `${s.mcp.requests} / ${s.mcp.replies}`);
  rows.push(null);
  const g = s.gateway;
  if (g.available) {
    row('gateway CPU (mean / peak)', `${pct(g.cpuPercent)} / ${pct(g.cpuPeakPercent)} of one core${g.cpuPercent === null ? ` (${g.reason})` : ''}`);
    row('gateway memory RSS (end / peak)', `${mb(g.rssBytes)} / ${mb(g.rssPeakBytes)}  (start ${mb(g.rssStartBytes)})`);
    if (g.eventLoopLagP99Ms !== null && g.eventLoopLagP99Ms !== undefined) row('gateway event-loop lag p99 (max)', `${g.eventLoopLagP99Ms.toFixed(1)} ms`);
  } else {
    row('gateway CPU', `n/a (${g.reason})`);
    row('gateway memory', `n/a (${g.reason})`);
  }
  row('simulator CPU / RSS', `${pct(s.simulator.cpuPercent)} / ${mb(s.simulator.rssBytes)}  (decode: ${s.simulator.decode})`);
  row('simulator event-loop delay p99 / max', `${s.simulator.eventLoopDelayP99Ms} / ${s.simulator.eventLoopDelayMaxMs} ms`);
  rows.push(null);
  row('session failures', fmtInt(s.failures.total));
  for (const k of FAILURE_KINDS) if (s.failures[k] > 0) row(`  ${FAILURE_LABELS[k]}`, fmtInt(s.failures[k]));
  row('RESULT', s.ok ? 'PASS' : `FAIL: ${s.problems.join('; ')}`);

  const width = Math.max(...rows.map((r) => (r ? r[0].length : 0)));
  const header =
    `xiaozhi device simulation: ${c.devices} device(s) for ${c.durationS} s (ran ${s.elapsedS} s) against ${c.gateway}\n` +
    `firmware ${c.firmware}, mode ${c.mode}, speak ${c.speakMs} ms, pause ${c.pauseMs} ms, ramp ${c.rampMs} ms` +
    `${c.abortEvery ? `, barge-in every ${c.abortEvery} turns` : ''}${c.turnsPerSession ? `, ${c.turnsPerSession} turns/session` : ''}\n` +
    `audio: ${c.audio}\n`;
  const rule = `${'─'.repeat(width)}  ${'─'.repeat(30)}`;
  const body = rows.map((r) => (r ? `${r[0].padEnd(width)}  ${r[1]}` : rule)).join('\n');
  const errors = s.deviceErrors.length ? `\nfirst device errors:\n${s.deviceErrors.map((l) => `  ${l}`).join('\n')}\n` : '';
  const notes = s.notes.length ? `\nnotes:\n${s.notes.map((l) => `  - ${l}`).join('\n')}\n` : '';
  return `${header}\n${rule}\n${body}\n${rule}\n${notes}${errors}`;
}
