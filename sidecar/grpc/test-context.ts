// A SidecarContext for the gRPC adapter's tests and benchmark: the real engine and a Telemetry that
// records what the adapter reports (the interface boundary, so tests can assert on decisions).
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { CompiledPolicy, Decision } from '../../policy/index.js';
import type {
  DecisionEvent,
  FailMode,
  RequestInfo,
  RequestTrace,
  SidecarContext,
  Telemetry,
} from '../context.js';

export interface RecordedRequest {
  info: RequestInfo;
  headers: Record<string, string | string[] | undefined>;
  traceId: string;
  spanId: string;
  model?: string;
  decisions: DecisionEvent[];
  ends: { decision: Decision; status: string | number }[];
}

export class RecordingTelemetry implements Telemetry {
  readonly requests: RecordedRequest[] = [];

  startRequest(headers: Record<string, string | string[] | undefined>, info: RequestInfo): RequestTrace {
    // continue the caller's trace when it sent one, like the real telemetry
    const incoming = typeof headers.traceparent === 'string' ? headers.traceparent.split('-') : [];
    const rec: RecordedRequest = {
      info,
      headers,
      traceId: incoming[1]?.length === 32 ? incoming[1] : randomBytes(16).toString('hex'),
      spanId: randomBytes(8).toString('hex'),
      decisions: [],
      ends: [],
    };
    this.requests.push(rec);
    return {
      traceId: rec.traceId,
      inject(carrier) {
        carrier.traceparent = `00-${rec.traceId}-${rec.spanId}-01`;
      },
      setModel(model) {
        rec.model = model;
      },
      decision(ev) {
        rec.decisions.push(ev);
      },
      scanned() {},
      upstream() {},
      end(outcome) {
        rec.ends.push(outcome);
      },
    };
  }

  policyReloaded(): void {}
  async shutdown(): Promise<void> {}
}

export function testContext(
  policy: CompiledPolicy | (() => CompiledPolicy),
  fail: FailMode = 'closed',
): SidecarContext & { telemetry: RecordingTelemetry } {
  const get = typeof policy === 'function' ? policy : () => policy;
  return {
    policy: get,
    fail,
    telemetry: new RecordingTelemetry(),
    log: pino({ level: 'silent' }),
    pod: { name: 'test-pod', namespace: 'test' },
  };
}
