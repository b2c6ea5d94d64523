// For the HTTP adapter's tests and benchmark: a SidecarContext with a Telemetry that records what the
// adapter reported (the interface boundary), a silent logger, and a listener in front of a fake vLLM.
import { pino } from 'pino';
import type { CompiledPolicy } from '../../policy/index.js';
import type {
  DecisionEvent,
  FailMode,
  Listener,
  RequestInfo,
  RequestTrace,
  SidecarContext,
  Telemetry,
} from '../context.js';

export interface RecordedTrace {
  info: RequestInfo;
  headers: Record<string, string | string[] | undefined>;
  traceId: string;
  model?: string;
  decisions: DecisionEvent[];
  ended: { decision: string; status: string | number }[];
}

export class RecordingTelemetry implements Telemetry {
  readonly traces: RecordedTrace[] = [];
  #n = 0;

  startRequest(headers: Record<string, string | string[] | undefined>, info: RequestInfo): RequestTrace {
    const traceId = (++this.#n).toString(16).padStart(32, '0');
    const rec: RecordedTrace = { info, headers, traceId, decisions: [], ended: [] };
    this.traces.push(rec);
    return {
      traceId,
      inject: (carrier) => {
        carrier.traceparent = `00-${traceId}-00000000000000aa-01`;
      },
      setModel: (m) => {
        if (m !== undefined) rec.model = m;
      },
      decision: (ev) => void rec.decisions.push(ev),
      scanned: () => undefined,
      upstream: () => undefined,
      end: (outcome) => void rec.ended.push(outcome),
    };
  }

  policyReloaded(): void {}

  async shutdown(): Promise<void> {}

  /** the trace for a trace id returned to a client */
  byId(traceId: string): RecordedTrace | undefined {
    return this.traces.find((t) => t.traceId === traceId);
  }
}

export function testContext(
  policy: CompiledPolicy,
  fail: FailMode = 'closed',
): SidecarContext & { telemetry: RecordingTelemetry; setPolicy(p: CompiledPolicy): void } {
  let current = policy;
  return {
    policy: () => current,
    setPolicy: (p) => void (current = p),
    fail,
    telemetry: new RecordingTelemetry(),
    log: pino({ level: 'silent' }),
    pod: { name: 'test-pod', namespace: 'test' },
  };
}

export function listenerUrl(l: Listener): string {
  return `http://${l.address.host}:${l.address.port}`;
}

// ---------------------------------------------------------------------------------------------
// Shared by index.test.ts and stream.test.ts

export const TEST_POLICY = `
apiVersion: inferguard.io/v1alpha1
kind: GuardPolicy
metadata: { name: http-test }
spec:
  packs: [prompt-injection]
  rules:
    - id: test.secret
      pattern: 'sk-live-[A-Za-z0-9]{24}'
      category: secrets
      directions: [input, output]
      action: block
    - id: test.email
      pattern: '[a-z]+@example\\.org'
      category: pii
      directions: [input, output]
      action: redact
  limits: { maxRequestBytes: 65536, maxOutputTokens: 512 }
  tools:
    default: deny
    allow:
      - name: get_weather
        args: { city: { pattern: '^[A-Za-z ]{1,32}$' } }
    deny: [shell_exec]
  output:
    urls: { allowDomains: [example.com], blockMarkdownImages: true }
    systemPromptLeak: { minChars: 40 }
  http: { allowPaths: ['GET /health', 'GET /v1/models', 'GET /metrics*'] }
`;

export const SECRET = 'sk-live-' + 'A1b2C3d4E5f6G7h8J9k0L1m2';

export async function jsonOf(res: Response): Promise<any> {
  return res.json();
}

export function parseSse(raw: string): string[] {
  return raw
    .split(/\r?\n\r?\n/)
    .map((b) =>
      b
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n'),
    )
    .filter((d) => d !== '');
}

export function chatText(events: string[]): string {
  return events
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d))
    .map((c) => (c.choices ?? []).map((ch: any) => ch.delta?.content ?? ch.text ?? '').join(''))
    .join('');
}
