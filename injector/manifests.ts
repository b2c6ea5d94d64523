// Reading and writing manifests for `inferguard inject`: YAML (multi-document) or JSON in, the same
// documents out with injected pod templates. Parsing keeps document order; documents the injector
// does not touch are re-serialised as data (comments are not kept, as with `istioctl kube-inject`).
import { parseAllDocuments, stringify } from 'yaml';
import { checkPolicyConfigMap } from './policy-configmap.js';
import {
  denialMessage,
  describeObject,
  mutate,
  type InjectorSettings,
  type MutateContext,
  type MutateResult,
} from './mutate.js';

export class ManifestError extends Error {}

/** parse YAML (any number of documents) or JSON (an object or an array of objects) */
export function parseManifests(text: string, file = '-'): unknown[] {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(text);
      return Array.isArray(parsed) ? parsed : [parsed];
    } catch {
      // not JSON after all (YAML flow mappings also start with "{"): fall through to YAML
    }
  }
  const docs = parseAllDocuments(text, { prettyErrors: true });
  const out: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0];
      const pos = e.linePos?.[0];
      throw new ManifestError(
        `${file}:${pos ? `${pos.line}:${pos.col}` : '1:1'}: ${e.message.split('\n')[0]}`,
      );
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue; // empty document ("---" at the end)
    out.push(value);
  }
  return out;
}

export type OutputFormat = 'yaml' | 'json';

export function renderManifests(objects: unknown[], format: OutputFormat): string {
  if (format === 'json') {
    const value = objects.length === 1 ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects };
    return `${JSON.stringify(value, null, 2)}\n`;
  }
  return objects.map((o) => stringify(o, { lineWidth: 0, singleQuote: true })).join('---\n');
}

export interface InjectReport {
  objects: unknown[];
  results: MutateResult[];
  /** the first denial, if any: the whole run fails like the webhook would */
  denied?: { object: string; reason: string; message: string };
}

export function injectObjects(
  objects: unknown[],
  settings: InjectorSettings,
  ctx: MutateContext = {},
): InjectReport {
  const results = objects.map((o) => mutate(o, settings, ctx));
  const report: InjectReport = { objects: results.map((r) => r.object), results };
  const bad = results.findIndex((r) => r.outcome === 'denied');
  if (bad >= 0) {
    const r = results[bad];
    report.denied = { object: describeObject(objects[bad]), reason: r.reason, message: denialMessage(r) };
    return report;
  }
  // what the validating webhook would reject at `kubectl apply`
  for (const o of objects) {
    const check = checkPolicyConfigMap(o);
    if (!check.ok) {
      report.denied = {
        object: describeObject(o),
        reason: check.reason,
        message: `${check.reason}: ${check.message}`,
      };
      return report;
    }
  }
  return report;
}
