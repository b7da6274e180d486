#!/usr/bin/env node
// xiaozhi-gateway command line: the top of the house. It dispatches to the gateway (src/) and to
// the benchmarks (bench/), both below it; neither imports it. Subcommands load lazily so `--help`
// stays instant.
import { readFileSync } from 'node:fs';

// The command line runs the product: @livekit/rtc-node logs at debug level (a line per room
// connect, on stdout beside our JSON log) unless NODE_ENV is 'production' when it is first loaded.
// Subcommands load lazily, below this line. An operator's own NODE_ENV is kept.
process.env.NODE_ENV ??= 'production';

const USAGE = `Usage: xiaozhi-gateway <command> [options]

Commands:
  start [options]            run the gateway (MQTT broker, OTA + metrics HTTP, UDP audio, agent)
  simulate [options]         simulated devices against a running gateway, with a summary table
  bench [micro|pipeline] [--json]
                             native micro-benchmarks per audio stage, or the pipeline throughput
                             benchmark, against baselines measured in the same run
  info                       native build information (libopus, SIMD, OpenSSL)
  version                    print the package version

Run 'xiaozhi-gateway <command> --help' for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { runStartCli } = await import('../src/start-command.js');
      return runStartCli(rest);
    }
    case 'simulate': {
      const { runSimulateCli } = await import('../src/sim/cli.js');
      return runSimulateCli(rest);
    }
    case 'bench': {
      const { runBenchCli } = await import('../bench/main.js');
      return runBenchCli(rest);
    }
    case 'info': {
      const { nativeBuildInfo, opusBuildInfo } = await import('../src/index.js');
      process.stdout.write(JSON.stringify({ ...nativeBuildInfo(), opus: opusBuildInfo() }, null, 2) + '\n');
      return 0;
    }
    case 'version':
    case '--version': {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      process.stdout.write(pkg.version + '\n');
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return command === undefined ? 1 : 0;
    default:
      process.stderr.write(`xiaozhi-gateway: unknown command '${command}'\n\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as Error & { code?: string };
    const message = (e.message ?? String(err)).replace(/^xiaozhi-gateway: /, '');
    process.stderr.write(`xiaozhi-gateway: ${e.code ? `[${e.code}] ` : ''}${message}\n`);
    process.exitCode = 1;
  },
);
