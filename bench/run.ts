// `npm run bench [-- NAME…]`: runs the benchmark modules bench/<name>.ts one after another, in one
// process tree, and prints each one's table. With names (`npm run bench -- engine grpc`) only those run.
//
// THE SHAPE OF A BENCHMARK MODULE (bench/engine.ts, bench/grpc.ts, bench/http.ts, …):
//
//   export async function run(): Promise<void>
//       measures its contenders side by side and prints its own table (markdown) to stdout: machine-
//       independent ratios first, absolute numbers beside them, spread as min/median/max where it
//       makes sense. It must clean up everything it started (child processes, servers) before it
//       resolves, and keep its whole run short (the engine's is ~60 s; the 2-core CI machine is shared).
//   export const description: string            (optional) one line shown in the run header
//
// A module may also be run on its own (`npx tsx bench/engine.ts`); guard that with
// `if (process.argv[1] === fileURLToPath(import.meta.url))` so importing it here does not run it twice.
// Machine and Node version are printed once here; modules need not repeat them.
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface BenchModule {
  run(): Promise<void>;
  description?: string;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));

export function benchNames(): string[] {
  return readdirSync(HERE)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'run.ts' && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .sort((a, b) => (a === 'engine' ? -1 : b === 'engine' ? 1 : a.localeCompare(b)));
}

export function machine(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model.trim() ?? 'unknown CPU'} × ${cpus.length}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}`;
}

async function main(args: string[]): Promise<number> {
  const all = benchNames();
  if (args.includes('--help') || args.includes('-h')) {
    console.log(`usage: npm run bench [-- NAME…]\n\nbenchmarks: ${all.join(', ')}`);
    return 0;
  }
  const unknown = args.filter((a) => !all.includes(a));
  if (unknown.length > 0) {
    console.error(
      `bench: unknown benchmark ${unknown.map((u) => `"${u}"`).join(', ')}; have: ${all.join(', ')}`,
    );
    return 2;
  }
  const picked = args.length > 0 ? all.filter((n) => args.includes(n)) : all;
  console.log(`machine: ${machine()}`);
  console.log(`date: ${new Date().toISOString()}  benchmarks: ${picked.join(', ')}`);
  for (const name of picked) {
    const mod = (await import(pathToFileURL(path.join(HERE, `${name}.ts`)).href)) as BenchModule;
    console.log(`\n## ${name}${mod.description ? ` — ${mod.description}` : ''}\n`);
    const t0 = performance.now();
    await mod.run();
    console.log(`\n(${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
