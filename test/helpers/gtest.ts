// Running the native GoogleTest binary (xz_native_tests) and reading its JSON report: shared by the
// native tier (test/native.test.ts, run directly) and the arm64 tier (test/arm64.test.ts, run under
// qemu-aarch64). Building the binary differs between the two and stays in each test.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface GtestCase {
  name: string;
  status?: string;
  result?: string;
  failures?: { failure: string }[];
}
export interface GtestSuite {
  name: string;
  tests: number;
  failures: number;
  disabled: number;
  testsuite: GtestCase[];
}
export interface GtestReport {
  tests: number;
  failures: number;
  disabled: number;
  time?: string;
  testsuites: GtestSuite[];
}

export interface GtestRun {
  run: SpawnSyncReturns<string>;
  /** The JSON report (--gtest_output), undefined when it could not be read (reportError says why). */
  report: GtestReport | undefined;
  reportError: string;
  seconds: number;
}

/** The last `lines` lines of a process's output. */
export function tail(text: string | Buffer | null | undefined, lines = 60): string {
  return String(text ?? '')
    .split('\n')
    .slice(-lines)
    .join('\n');
}

/**
 * Runs `command ...args --gtest_output=json:<tmp>` (command is the binary itself, or a runner such as
 * qemu-aarch64 with the binary among args), passes gtest's info and summary lines to `log`, and
 * reads the JSON report.
 */
export function runGtest(command: string, args: string[], options: { cwd: string; timeoutMs: number; log: (line: string) => void; tmpPrefix: string }): GtestRun {
  const out = mkdtempSync(join(tmpdir(), options.tmpPrefix));
  const json = join(out, 'gtest.json');
  const started = Date.now();
  const run = spawnSync(command, [...args, `--gtest_output=json:${json}`], {
    cwd: options.cwd,
    encoding: 'utf8',
    timeout: options.timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
  });
  const seconds = (Date.now() - started) / 1000;
  for (const line of `${run.stdout ?? ''}`.split('\n')) {
    if (/^\[ info {5}\]|^\[={10}\]|^\[ {2}(PASSED|FAILED|SKIPPED) {2}\]|^ *\d+ FAILED TEST/.test(line)) options.log(line);
  }
  let report: GtestReport | undefined;
  let reportError = '';
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as GtestReport;
  } catch (err) {
    reportError = String(err);
  }
  rmSync(out, { recursive: true, force: true });
  return { run, report, reportError, seconds };
}

/** gtest's failure lines from its stdout (the first 80), for an assertion message. */
export function failureLines(run: SpawnSyncReturns<string>): string {
  return `${run.stdout ?? ''}`
    .split('\n')
    .filter((l) => /^\[ {2}FAILED {2}\]|Failure$|^Expected|^ {2}Actual|Which is/.test(l))
    .slice(0, 80)
    .join('\n');
}

/** One suite's tests that ran (not skipped) and its failed tests with their messages. */
export function suiteResult(suite: GtestSuite): { ran: number; failures: string[] } {
  return {
    ran: suite.testsuite.filter((t) => t.status === 'RUN' && t.result !== 'SKIPPED').length,
    failures: suite.testsuite
      .filter((t) => (t.failures?.length ?? 0) > 0)
      .map((t) => `${t.name}: ${t.failures!.map((f) => f.failure).join('\n')}`),
  };
}
