// Aggregates the per-run child results into per-stage summaries, judges the targets, and renders
// the text table. The JSON output is the same summary object.
import type { ChildResult, MissingBaseline, StageId, VariantResult, VariantRole } from './protocol.js';
import { median, minMax } from './stats.js';
import { stageInfo, type Target } from './stages.js';

export interface VariantSummary {
  name: string;
  role: VariantRole;
  /** Median over runs of the per-run median / p99, ns per frame. */
  medianNs: number;
  p99Ns: number;
  /** Spread across runs: min and max of the per-run medians. */
  medianRangeNs: [number, number];
  p99RangeNs: [number, number];
  perRunMedianNs: number[];
  perRunP99Ns: number[];
  batchSize: number;
  batchesPerRun: number;
  notes?: Record<string, string | number | boolean>;
}

export interface Comparison {
  baseline: string;
  /** baseline median / ours median, computed per run (same process, same noise), then the median. */
  speedup: number;
  speedupRange: [number, number];
  perRunSpeedup: number[];
  /** Same ratio for the p99s. */
  p99Speedup: number;
  target?: Target & { met: boolean };
}

export interface StageSummary {
  id: StageId;
  title: string;
  frame: string;
  runs: number;
  variants: VariantSummary[];
  comparisons: Comparison[];
  /** Baselines not measured because their package is not installed (with the command to install it). */
  missingBaselines: MissingBaseline[];
  facts: Record<string, string | number | boolean>;
  warnings: string[];
  errors: string[];
  elapsedMs: number;
}

export function summarizeStage(id: StageId, results: ChildResult[], errors: string[]): StageSummary {
  const info = stageInfo(id);
  const names: string[] = [];
  const byName = new Map<string, VariantResult[]>();
  for (const r of results) {
    for (const v of r.variants) {
      if (!byName.has(v.name)) {
        names.push(v.name);
        byName.set(v.name, []);
      }
      byName.get(v.name)!.push(v);
    }
  }
  const variants: VariantSummary[] = names.map((name) => {
    const rs = byName.get(name)!;
    const med = rs.map((r) => r.medianNs);
    const p99 = rs.map((r) => r.p99Ns);
    const last = rs[rs.length - 1]!;
    return {
      name,
      role: last.role,
      medianNs: median(med),
      p99Ns: median(p99),
      medianRangeNs: minMax(med),
      p99RangeNs: minMax(p99),
      perRunMedianNs: med,
      perRunP99Ns: p99,
      batchSize: last.batchSize,
      batchesPerRun: Math.round(median(rs.map((r) => r.batches))),
      ...(last.notes ? { notes: last.notes } : {}),
    };
  });

  const comparisons: Comparison[] = [];
  const ours = variants.find((v) => v.role === 'ours');
  if (ours) {
    for (const b of variants.filter((v) => v.role === 'baseline')) {
      const perRun: number[] = [];
      const perRunP99: number[] = [];
      for (const r of results) {
        const o = r.variants.find((v) => v.role === 'ours');
        const x = r.variants.find((v) => v.name === b.name);
        if (o && x) {
          perRun.push(x.medianNs / o.medianNs);
          perRunP99.push(x.p99Ns / o.p99Ns);
        }
      }
      const speedup = median(perRun);
      const t = info.targets.find((t) => t.baseline === b.name);
      comparisons.push({
        baseline: b.name,
        speedup,
        speedupRange: minMax(perRun),
        perRunSpeedup: perRun,
        p99Speedup: median(perRunP99),
        ...(t ? { target: { ...t, met: speedup >= t.minSpeedup } } : {}),
      });
    }
  }
  const facts: Record<string, string | number | boolean> = {};
  for (const r of results) Object.assign(facts, r.facts);
  const warnings = [...new Set(results.flatMap((r) => r.warnings))];
  const missingBaselines: MissingBaseline[] = [];
  for (const m of results.flatMap((r) => r.missingBaselines ?? [])) {
    if (!missingBaselines.some((x) => x.name === m.name)) missingBaselines.push(m);
  }
  return {
    id,
    title: info.title,
    frame: info.frame,
    runs: results.length,
    variants,
    comparisons,
    missingBaselines,
    facts,
    warnings,
    errors,
    elapsedMs: results.reduce((n, r) => n + r.elapsedMs, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Text rendering

export function us(ns: number): string {
  if (!Number.isFinite(ns)) return '—';
  const v = ns / 1000;
  if (v < 1) return v.toFixed(3);
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return v.toFixed(0);
}

function ratio(x: number): string {
  if (!Number.isFinite(x)) return '—';
  return x >= 10 ? `${x.toFixed(1)}×` : `${x.toFixed(2)}×`;
}

function range(lo: number, hi: number, fmt: (n: number) => string): string {
  return `${fmt(lo)}–${fmt(hi)}`;
}

function table(rows: string[][], header: string[][], rightAlign: boolean[]): string {
  const all = [...header, ...rows];
  const widths = all[0]!.map((_, c) => Math.max(...all.map((r) => [...(r[c] ?? '')].length)));
  const line = (r: string[]): string =>
    r
      .map((cell, c) => {
        const pad = widths[c]! - [...cell].length;
        return rightAlign[c] ? ' '.repeat(pad) + cell : cell + ' '.repeat(pad);
      })
      .join('  ')
      .trimEnd();
  const sep = widths.map((w) => '─'.repeat(w)).join('  ');
  return [...header.map(line), sep, ...rows.map(line)].join('\n');
}

export function renderMainTable(stages: StageSummary[]): string {
  const header = [
    ['stage', 'vs baseline', 'ours µs/frame', '', '', 'baseline µs/frame', '', '', 'speedup', '', 'target', 'met?'],
    ['', '', 'median', '[runs]', 'p99', 'median', '[runs]', 'p99', 'base÷ours', '[runs]', '', ''],
  ];
  const rows: string[][] = [];
  for (const s of stages) {
    if (s.errors.length > 0 && s.variants.length === 0) {
      rows.push([s.title, 'FAILED (see errors below)', '', '', '', '', '', '', '', '', '', 'FAILED']);
      continue;
    }
    const ours = s.variants.find((v) => v.role === 'ours');
    if (!ours) continue;
    const baselines = s.variants.filter((v) => v.role === 'baseline');
    if (baselines.length === 0 && s.missingBaselines.length === 0) {
      rows.push([s.title, '—', us(ours.medianNs), `[${range(...ours.medianRangeNs, us)}]`, us(ours.p99Ns), '', '', '', '', '', '—', 'info']);
    }
    baselines.forEach((b, i) => {
      const c = s.comparisons.find((x) => x.baseline === b.name)!;
      const t = c.target;
      rows.push([
        i === 0 ? s.title : '',
        b.name,
        us(ours.medianNs),
        `[${range(...ours.medianRangeNs, us)}]`,
        us(ours.p99Ns),
        us(b.medianNs),
        `[${range(...b.medianRangeNs, us)}]`,
        us(b.p99Ns),
        ratio(c.speedup),
        `[${range(...c.speedupRange, ratio)}]`,
        t ? t.text : 'info',
        t ? (t.met ? 'yes' : 'NO') : '—',
      ]);
    });
    s.missingBaselines.forEach((m, i) => {
      const t = stageInfo(s.id).targets.find((x) => x.baseline === m.name);
      rows.push([
        baselines.length === 0 && i === 0 ? s.title : '',
        m.name,
        us(ours.medianNs),
        `[${range(...ours.medianRangeNs, us)}]`,
        us(ours.p99Ns),
        '', '', '', '', '',
        t ? t.text : 'info',
        notInstalledText(m),
      ]);
    });
  }
  return table(rows, header, [false, false, true, true, true, true, true, true, true, true, false, false]);
}

export function renderProbes(stages: StageSummary[]): string {
  const rows: string[][] = [];
  for (const s of stages) {
    const probes = s.variants.filter((v) => v.role === 'probe');
    if (probes.length === 0) continue;
    const ours = s.variants.find((v) => v.role === 'ours');
    if (ours) rows.push([s.title, `${ours.name} (public API)`, us(ours.medianNs), `[${range(...ours.medianRangeNs, us)}]`, us(ours.p99Ns)]);
    for (const p of probes) {
      rows.push([ours ? '' : s.title, p.name.replace(/^probe: /, ''), us(p.medianNs), `[${range(...p.medianRangeNs, us)}]`, us(p.p99Ns)]);
    }
  }
  if (rows.length === 0) return '';
  return table(rows, [['stage', 'where the time goes (probe)', 'median µs', '[runs]', 'p99 µs']], [false, false, true, true, true]);
}

export function renderFacts(stages: StageSummary[]): string {
  const lines: string[] = [];
  for (const s of stages) {
    lines.push(`${s.title}: ${s.frame}`);
    for (const [k, v] of Object.entries(s.facts)) lines.push(`    ${k}: ${v}`);
    for (const v of s.variants) {
      const notes = v.notes ? Object.entries(v.notes).map(([k, x]) => `${k} ${x}`).join(', ') : '';
      lines.push(`    ${v.name}: ${v.batchesPerRun} batches × ${v.batchSize} frame(s) per run${notes ? `; ${notes}` : ''}`);
    }
    for (const w of s.warnings) lines.push(`    WARNING: ${w}`);
    for (const e of s.errors) lines.push(`    ERROR: ${e.split('\n').join('\n      ')}`);
  }
  return lines.join('\n');
}

/** "baseline not installed: `npm i @discordjs/opus` to compare" */
export function notInstalledText(m: MissingBaseline): string {
  return `baseline not installed: \`${m.install}\` to compare`;
}

export interface TargetVerdict {
  stage: StageId;
  title: string;
  baseline: string;
  text: string;
  minSpeedup: number;
  speedup: number;
  speedupRange: [number, number];
  /** False when the baseline's package is not installed: such a target is neither met nor missed. */
  measured: boolean;
  met: boolean;
  /** Set when not measured: the command that installs the baseline. */
  install?: string;
}

export function verdicts(stages: StageSummary[]): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  for (const s of stages) {
    const info = stageInfo(s.id);
    for (const t of info.targets) {
      const c = s.comparisons.find((x) => x.baseline === t.baseline);
      const missing = s.missingBaselines.find((m) => m.name === t.baseline);
      out.push({
        stage: s.id,
        title: s.title,
        baseline: t.baseline,
        text: t.text,
        minSpeedup: t.minSpeedup,
        speedup: c?.speedup ?? Number.NaN,
        speedupRange: c?.speedupRange ?? [Number.NaN, Number.NaN],
        measured: !missing,
        met: c?.target?.met ?? false,
        ...(missing ? { install: missing.install } : {}),
      });
    }
  }
  return out;
}

export function renderVerdicts(vs: TargetVerdict[], stages: StageSummary[]): string {
  const lines: string[] = [];
  lines.push(`targets met: ${verdictLine(vs)}`);
  for (const v of vs) {
    if (v.met || !v.measured) continue;
    const s = stages.find((x) => x.id === v.stage);
    const ours = s?.variants.find((x) => x.role === 'ours');
    const base = s?.variants.find((x) => x.name === v.baseline);
    if (!Number.isFinite(v.speedup) || !ours || !base) {
      lines.push(`  MISSED ${v.title} vs ${v.baseline}: no measurement (the stage failed)`);
      continue;
    }
    const needNs = base.medianNs / v.minSpeedup;
    lines.push(
      `  MISSED ${v.title} vs ${v.baseline}: ${ratio(v.speedup)} [runs ${range(...v.speedupRange, ratio)}], needs ${v.text} ` +
        `(${ratio(v.minSpeedup)}): ours ${us(ours.medianNs)} µs must reach ≤ ${us(needNs)} µs ` +
        `(−${Math.round((1 - needNs / ours.medianNs) * 100)}%)`,
    );
  }
  return lines.join('\n');
}

/** "4/6", or with baselines not installed "4/4 measured; 2 baselines not installed (`npm i …` to compare)". */
export function verdictLine(vs: TargetVerdict[]): string {
  const measured = vs.filter((v) => v.measured);
  const met = measured.filter((v) => v.met).length;
  const unmeasured = vs.length - measured.length;
  if (unmeasured === 0) return `${met}/${vs.length}`;
  const installs = [...new Set(vs.filter((v) => !v.measured).map((v) => `\`${v.install}\``))].join(', ');
  return `${met}/${measured.length} measured; ${unmeasured} baseline${unmeasured === 1 ? '' : 's'} not installed (${installs} to compare)`;
}
