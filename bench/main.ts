// `xiaozhi-gateway bench [micro|pipeline|e2e|churn] [options]` (called from bin/xiaozhi-gateway.ts).
//
// micro: per audio stage and per 60 ms frame, our native implementation against baselines measured
// in the same process run (interleaved), each stage in its own child process, repeated R times.
// See bench/README.md for the method.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, platform, arch, release, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildFailure, ChildRequest, ChildResult, MeasureSettings, StageId } from './micro/protocol.js';
import { STAGE_IDS } from './micro/protocol.js';
import type { OpusBuildInfo } from '../src/index.js';
import { renderFacts, renderMainTable, renderProbes, renderVerdicts, summarizeStage, verdictLine, verdicts, type StageSummary } from './micro/report.js';
import { selectStages, STAGES } from './micro/stages.js';

const USAGE = `Usage: xiaozhi-gateway bench [micro] [options]
       xiaozhi-gateway bench pipeline [--help]     pipeline throughput vs the predecessor and the C++ limit
       xiaozhi-gateway bench e2e [--help]          latency added against a local livekit-server
       xiaozhi-gateway bench churn [--help]        steady devices' downlink while others hello/goodbye in bursts

Micro-benchmarks per audio stage, per 60 ms device frame: median and p99 of ours against baselines
measured in the same run, each stage in its own process, ours and baselines interleaved.

Options:
  --runs N        repeat every stage's process N times (default 3; spread = min–max of medians)
  --quick         short run: 1 run, shorter warm-up and measurement (smoke test, noisier)
  --only STAGES   comma-separated stages or aliases (repeatable):
                  ${STAGES.map((s) => s.id).join(', ')}
                  (aliases: conversion, resampler, opus, encode, decode, aes, ...)
  --time MS       measured time per variant per run (default 1000, --quick 250)
  --json          print the results as JSON on stdout (progress still goes to stderr)
  --list          list the stages and their targets
  -h, --help      this help

A baseline whose package is not installed (@discordjs/opus is a devDependency) is left out: its row
says how to install it, and its target is reported as not measured rather than missed.

Exit code: 0 all measured targets met, 1 a target missed or a stage failed, 2 usage error.`;

interface Options {
  runs: number;
  json: boolean;
  stages: StageId[];
  settings: MeasureSettings;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Options | 'help' | 'list' {
  let runs: number | undefined;
  let quick = false;
  let json = false;
  let time: number | undefined;
  const only: string[] = [];
  const intArg = (flag: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: expected an integer in [${min}, ${max}], got ${v ?? 'nothing'}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '-h': case '--help': return 'help';
      case '--list': return 'list';
      case '--json': json = true; break;
      case '--quick': quick = true; break;
      case '--runs': runs = intArg('--runs', value(), 1, 100); break;
      case '--time': time = intArg('--time', value(), 20, 600000); break;
      case '--only': {
        const v = value();
        if (!v) throw new UsageError('--only: expected a stage name');
        only.push(v);
        break;
      }
      default: throw new UsageError(`unknown option '${a}'`);
    }
  }
  let stages: StageId[] = [...STAGE_IDS];
  if (only.length > 0) {
    const { ids, unknown } = selectStages(only);
    if (unknown.length > 0) throw new UsageError(`--only: unknown stage ${unknown.map((u) => `'${u}'`).join(', ')} (stages: ${STAGE_IDS.join(', ')})`);
    stages = ids;
  }
  const settings: MeasureSettings = quick
    ? { warmupMs: 100, measureMs: time ?? 250, blockMs: 10, minBatchUs: 25, maxBatch: 50 }
    : { warmupMs: 300, measureMs: time ?? 1000, blockMs: 20, minBatchUs: 25, maxBatch: 50 };
  return { runs: runs ?? (quick ? 1 : 3), json, stages, settings };
}

export async function runBenchCli(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  let sub = 'micro';
  let args = argv;
  if (first !== undefined && !first.startsWith('-')) {
    sub = first;
    args = rest;
  }
  switch (sub) {
    case 'micro':
      break;
    case 'pipeline': {
      const { runPipelineBench } = await import('./pipeline/main.js');
      return runPipelineBench(args);
    }
    case 'e2e': {
      const { runE2eBenchCli } = await import('./e2e/main.js');
      return runE2eBenchCli(args);
    }
    case 'churn': {
      const { runChurnBench } = await import('./churn/main.js');
      return runChurnBench(args);
    }
    default:
      process.stderr.write(`xiaozhi-gateway bench: unknown benchmark '${sub}'\n\n${USAGE}\n`);
      return 2;
  }
  let opts: ReturnType<typeof parseArgs>;
  try {
    opts = parseArgs(args);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`xiaozhi-gateway bench: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (opts === 'list') {
    for (const s of STAGES) {
      process.stdout.write(`${s.id.padEnd(18)} ${s.frame}\n${''.padEnd(18)} target: ${s.targets.map((t) => `${t.text} (vs ${t.baseline})`).join('; ') || 'none (informational)'}\n`);
    }
    return 0;
  }
  return runMicro(opts);
}

// ---------------------------------------------------------------------------------------------

const here = dirname(fileURLToPath(import.meta.url));
const CHILD = join(here, 'micro', 'child.js');

function runChild(req: ChildRequest): Promise<ChildResult | ChildFailure> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', CHILD, JSON.stringify(req)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let message: ChildResult | ChildFailure | undefined;
    let output = '';
    // A stage takes seconds; a hung baseline must not hang the suite.
    const limitMs = 300_000 + 20 * (req.settings.warmupMs + req.settings.measureMs);
    const timer = setTimeout(() => {
      output += `\n[killed after ${limitMs / 1000} s]`;
      child.kill('SIGKILL');
    }, limitMs);
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-8000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.on('message', (m) => {
      message = m as ChildResult | ChildFailure;
    });
    child.on('error', (err) => resolve({ stage: req.stage, run: req.run, error: `spawn failed: ${err.message}` }));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (message) {
        if ('error' in message && output.trim()) message.error += `\n--- child output ---\n${output.trim()}`;
        resolve(message);
      } else {
        resolve({ stage: req.stage, run: req.run, error: `child exited (${signal ?? `code ${code}`}) without a result\n${output.trim()}` });
      }
    });
  });
}

/** A dependency's package.json, found by walking up from its entry point (exports maps may hide it). */
function packageJsonOf(spec: string): { dir: string; version: string } | undefined {
  try {
    const require = createRequire(import.meta.url);
    for (let dir = dirname(require.resolve(spec)); dirname(dir) !== dir; dir = dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version: string };
        if (pkg.name === spec) return { dir, version: pkg.version };
      } catch {
        // no package.json at this level
      }
    }
  } catch {
    // not installed
  }
  return undefined;
}

function packageVersion(spec: string): string {
  return packageJsonOf(spec)?.version ?? `not installed (\`npm i ${spec}\` to compare)`;
}

function discordLibopus(): string {
  try {
    const pkgDir = packageJsonOf('@discordjs/opus')?.dir;
    if (!pkgDir) return 'unknown';
    const m = /PACKAGE_VERSION="?([^"\n]+)/.exec(readFileSync(join(pkgDir, 'deps', 'opus', 'package_version'), 'utf8'));
    return m ? `libopus ${m[1]}` : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Which addon binary the children load (node-gyp-build's choice), with its size, mtime and hash:
 *  in a tree where the addon is being rebuilt, results must be attributable to one binary. */
async function addonIdentity(): Promise<string> {
  try {
    const { addonSearchDir, packageRoot } = await import('../src/native/addon.js');
    const require = createRequire(import.meta.url);
    const file = (require('node-gyp-build') as { path(dir: string): string }).path(addonSearchDir());
    const bytes = readFileSync(file);
    const sha = createHash('sha256').update(bytes).digest('hex').slice(0, 12);
    return `${relative(packageRoot, file)} (${bytes.length} bytes, ${statSync(file).mtime.toISOString()}, sha256 ${sha})`;
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}

async function machineInfo(): Promise<Record<string, unknown>> {
  const { nativeBuildInfo, opusBuildInfo } = await import('../src/index.js');
  const c = cpus();
  return {
    cpu: c[0]?.model ?? 'unknown',
    cores: c.length,
    os: `${platform()} ${release()} ${arch()}`,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    v8: process.versions.v8,
    nodeOpenssl: process.versions.openssl,
    native: nativeBuildInfo(),
    opus: opusBuildInfo(),
    addon: await addonIdentity(),
    baselines: {
      '@livekit/rtc-node': packageVersion('@livekit/rtc-node'),
      '@discordjs/opus': packageJsonOf('@discordjs/opus') ? `${packageVersion('@discordjs/opus')} (${discordLibopus()})` : packageVersion('@discordjs/opus'),
    },
    loadavgStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

function log(msg: string): void {
  process.stderr.write(msg + '\n');
}

async function runMicro(opts: Options): Promise<number> {
  const started = performance.now();
  const machine = await machineInfo();
  const results = new Map<StageId, ChildResult[]>();
  const errors = new Map<StageId, string[]>();
  for (const id of opts.stages) {
    results.set(id, []);
    errors.set(id, []);
  }
  log(`bench micro: ${opts.stages.length} stage(s) × ${opts.runs} run(s), each in its own process ` +
    `(warm-up ${opts.settings.warmupMs} ms, ${opts.settings.measureMs} ms measured per variant)`);
  // Runs are the outer loop: the repeats of one stage are spread over the whole session, so a
  // burst of machine noise lands in one run of several stages rather than all runs of one.
  for (let run = 1; run <= opts.runs; run++) {
    for (const stage of opts.stages) {
      const t0 = performance.now();
      const r = await runChild({ stage, run, settings: opts.settings });
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      if ('error' in r) {
        errors.get(stage)!.push(`run ${run}: ${r.error}`);
        log(`  [run ${run}/${opts.runs}] ${stage}: FAILED (${secs} s)`);
      } else {
        results.get(stage)!.push(r);
        log(`  [run ${run}/${opts.runs}] ${stage}: ${secs} s`);
      }
    }
  }
  const stages: StageSummary[] = opts.stages.map((id) => summarizeStage(id, results.get(id)!, errors.get(id)!));
  const vs = verdicts(stages);
  const failed = stages.some((s) => s.errors.length > 0);
  // Targets whose baseline package is not installed are reported, not judged.
  const ok = !failed && vs.every((v) => v.met || !v.measured);
  machine.loadavgEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  const addonAtEnd = await addonIdentity();
  const addonChanged = addonAtEnd !== machine.addon;
  if (addonChanged) machine.addonAtEnd = addonAtEnd;

  if (opts.json) {
    const out = {
      benchmark: 'micro',
      date: new Date().toISOString(),
      unit: 'ns per 60 ms frame',
      machine,
      settings: { runs: opts.runs, ...opts.settings },
      stages,
      targets: vs,
      summary: {
        targets: vs.length,
        measured: vs.filter((v) => v.measured).length,
        met: vs.filter((v) => v.measured && v.met).length,
        baselinesNotInstalled: vs.filter((v) => !v.measured).length,
        failedStages: stages.filter((s) => s.errors.length > 0).map((s) => s.id),
        verdict: `targets met: ${verdictLine(vs)}`,
      },
      ok,
      elapsedMs: Math.round(performance.now() - started),
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    const m = machine as { cpu: string; cores: number; os: string; node: string; v8: string; native: Record<string, string>; opus: OpusBuildInfo; addon: string; baselines: Record<string, string>; loadavgStart: number[]; loadavgEnd: number[] };
    const simd = m.opus.simd;
    const lines = [
      '',
      'xiaozhi-gateway micro-benchmarks — per 60 ms frame, µs (median and p99 over timed batches; [runs] = min–max of per-run medians)',
      `machine: ${m.cpu} × ${m.cores} cores, ${m.os}; node ${m.node} (V8 ${m.v8}); load avg ${m.loadavgStart.join(' ')} → ${m.loadavgEnd.join(' ')}`,
      `native:  ${Object.entries(m.native).map(([k, v]) => `${k} ${v}`).join('; ')}`,
      `opus:    ${m.opus.version}; SIMD active: ${simd.active.join(', ') || 'none'} (compiled: ${simd.compiled.join(', ') || 'none'}; ` +
        `this CPU: ${simd.cpu.join(', ') || 'none'}; ${m.opus.runtimeCpuDetection ? 'chosen at run time' : 'presumed at build time'})`,
      `addon:   ${m.addon}`,
      ...(addonChanged ? [`WARNING: the addon binary changed during the run (now ${addonAtEnd}); runs may mix two builds`] : []),
      `baselines: ${Object.entries(m.baselines).map(([k, v]) => `${k} ${v}`).join('; ')}`,
      `method: ${opts.runs} run(s) per stage, each a fresh process; warm-up ${opts.settings.warmupMs} ms; ` +
        `variants interleaved in ~${opts.settings.blockMs} ms blocks, ${opts.settings.measureMs} ms measured each; speedup = baseline median ÷ ours median (per run, then median)`,
      '',
      renderMainTable(stages),
      '',
    ];
    const probes = renderProbes(stages);
    if (probes) lines.push(probes, '');
    lines.push(renderFacts(stages), '', renderVerdicts(vs, stages));
    if (failed) lines.push(`stages failed: ${stages.filter((s) => s.errors.length > 0).map((s) => s.id).join(', ')}`);
    lines.push(`total ${((performance.now() - started) / 1000).toFixed(1)} s`, '');
    process.stdout.write(lines.join('\n'));
  }
  return ok ? 0 : 1;
}
