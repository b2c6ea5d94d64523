#!/usr/bin/env node
// The one `inferguard` entry point: dispatches to the programs. Each command module exports
// `run(args: string[]): Promise<number>` and returns the process exit code; modules load lazily so
// `inferguard scan` never pays for gRPC or OpenTelemetry start-up.

interface Command {
  module: string;
  summary: string;
}

const COMMANDS: Record<string, Command> = {
  sidecar: { module: './sidecar/main.js', summary: 'run the data plane in front of a model server' },
  scan: { module: './policy/cli/scan.js', summary: 'scan stdin against a policy and print findings' },
  policy: { module: './policy/cli/policy.js', summary: 'policy validate FILE… | policy test FILE…' },
  eval: {
    module: './policy/cli/eval.js',
    summary: 'measure detection and false positives on a JSONL corpus',
  },
  injector: { module: './injector/main.js', summary: 'run the mutating/validating admission webhook server' },
  inject: { module: './injector/cli.js', summary: 'inject the sidecar into manifests offline (-f FILE|-)' },
  'init-redirect': {
    module: './injector/redirect-cli.js',
    summary: 'install iptables REDIRECT rules (init container)',
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: inferguard <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nRun 'inferguard <command> --help' for a command's flags.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === 'version') {
    const { readFileSync, existsSync } = await import('node:fs');
    // from source the package.json sits beside cli.ts; from the build it is one level up (dist/cli.js)
    const candidates = ['./package.json', '../package.json'].map((p) => new URL(p, import.meta.url));
    const found = candidates.find((u) => existsSync(u)) ?? candidates[0];
    const pkg = JSON.parse(readFileSync(found, 'utf8')) as { version: string };
    process.stdout.write(`inferguard ${pkg.version}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`inferguard: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const mod = (await import(command.module)) as { run(args: string[]): Promise<number> };
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Servers keep the event loop alive and exit on their own; one-shot commands set the code here.
    if (code !== undefined && code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`inferguard: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
