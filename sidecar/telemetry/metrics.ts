// Prometheus series served on the admin listener's /metrics (docs/telemetry.md lists them all).
// Labels carry rule ids, categories, protocols and decisions only: never text from a request, and
// nothing unbounded that a client controls (no model names, paths or tool names).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** scan time is µs..ms: the engine's budget is 50 µs for 4 KiB */
const SCAN_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];
/** upstream time is the model: milliseconds to minutes */
const UPSTREAM_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class SidecarMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'inferguard_requests_total',
    help: 'Requests handled, by protocol and final decision (allow, block, redact, monitor)',
    labelNames: ['protocol', 'decision'] as const,
    registers: [this.registry],
  });
  readonly findings = new Counter({
    name: 'inferguard_findings_total',
    help: 'Rule matches, by rule id, category, direction and effective action',
    labelNames: ['rule', 'category', 'direction', 'action'] as const,
    registers: [this.registry],
  });
  readonly decisions = new Counter({
    name: 'inferguard_decisions_total',
    help: 'Non-allow decisions (each one is a span and a log line), by protocol, direction and decision',
    labelNames: ['protocol', 'direction', 'decision'] as const,
    registers: [this.registry],
  });
  readonly failOpen = new Counter({
    name: 'inferguard_fail_open_total',
    help: 'Requests forwarded unscanned because the engine faulted and --fail open is set',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });
  readonly scanSeconds = new Histogram({
    name: 'inferguard_scan_duration_seconds',
    help: 'Time the guard engine spent scanning, per request direction',
    labelNames: ['protocol', 'direction'] as const,
    buckets: SCAN_BUCKETS,
    registers: [this.registry],
  });
  readonly upstreamSeconds = new Histogram({
    name: 'inferguard_upstream_duration_seconds',
    help: 'Time the model server took to answer (to the end of the response)',
    labelNames: ['protocol'] as const,
    buckets: UPSTREAM_BUCKETS,
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'inferguard_policy_reloads_total',
    help: 'Policy reload attempts after a change on disk, by result (success, failure)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reloadError = new Gauge({
    name: 'inferguard_policy_reload_error',
    help: '1 while the policy on disk is invalid and the last good policy is still enforced, else 0',
    registers: [this.registry],
  });
  readonly policyInfo = new Gauge({
    name: 'inferguard_policy_info',
    help: 'The policy in force (value 1): its name and sha256 hash',
    labelNames: ['name', 'hash'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // pre-create the reload series so dashboards see 0 rather than no data
    this.reloads.inc({ result: 'success' }, 0);
    this.reloads.inc({ result: 'failure' }, 0);
    this.reloadError.set(0);
  }

  setPolicy(name: string, hash: string): void {
    this.policyInfo.reset();
    this.policyInfo.set({ name, hash }, 1);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
