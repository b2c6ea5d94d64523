// `inferguard inject -f FILE|- [-o yaml|json]`: offline injection through the same mutate() the
// webhook uses. Exit 0 with the documents on stdout; a document the webhook would deny makes the whole
// run fail (exit 1, nothing on stdout, the webhook's message on stderr) so a pipeline into
// `kubectl apply` never applies half a manifest. Usage errors exit 2.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  injectObjects,
  ManifestError,
  parseManifests,
  renderManifests,
  type OutputFormat,
} from './manifests.js';
import { settingOptions, settingsFrom, settingsHelp, UsageError, type SettingFlag } from './settings.js';

const HELP = `usage: inferguard inject -f FILE|- [-o yaml|json] [flags]

Injects the inferguard sidecar into Pods and workloads (Deployment, StatefulSet, DaemonSet,
ReplicaSet, Job, CronJob) that carry inferguard.io/inject: "true", like the webhook would.
Other documents pass through unchanged.

  -f, --filename FILE             manifest file (YAML, multi-document, or JSON); "-" reads stdin
  -o, --output FORMAT             yaml (default) or json
  -n, --namespace NS              namespace to assume for objects without metadata.namespace
  -q, --quiet                     do not report skipped objects on stderr
${settingsHelp()}
`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function run(args: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      options: {
        filename: { type: 'string', short: 'f' },
        output: { type: 'string', short: 'o', default: 'yaml' },
        namespace: { type: 'string', short: 'n' },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        ...settingOptions(),
      },
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`inferguard inject: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const file = values.filename as string | undefined;
  const output = values.output as string;
  if (!file) {
    process.stderr.write(`inferguard inject: -f FILE (or -f - for stdin) is required\n\n${HELP}`);
    return 2;
  }
  if (output !== 'yaml' && output !== 'json') {
    process.stderr.write(`inferguard inject: -o must be yaml or json, not "${output}"\n`);
    return 2;
  }
  try {
    const settings = settingsFrom(values as Partial<Record<SettingFlag, string>>, process.env);
    const text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
    const objects = parseManifests(text, file === '-' ? '<stdin>' : file);
    const report = injectObjects(objects, settings, { namespace: values.namespace as string | undefined });
    if (report.denied) {
      const d = report.denied;
      process.stderr.write(`inferguard inject: ${d.object}: denied: ${d.message}\n`);
      return 1;
    }
    if (!values.quiet) {
      report.results.forEach((r, i) => {
        for (const w of r.warnings) process.stderr.write(`${describe(objects[i])}: ${w}\n`);
      });
    }
    process.stdout.write(renderManifests(report.objects, output as OutputFormat));
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`inferguard inject: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ManifestError || (err as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write(`inferguard inject: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}

function describe(o: unknown): string {
  const m = (o as { kind?: string; metadata?: { name?: string } }) ?? {};
  return `${m.kind ?? 'object'} ${m.metadata?.name ?? '<unnamed>'}`;
}
