// One proxied call's bookkeeping: the policy snapshot, its RequestTrace, and the obligation to call
// trace.end() exactly once whatever way the call finishes (OK, our error, upstream error, cancel).
import { performance } from 'node:perf_hooks';
import type { CompiledPolicy, Decision } from '../../policy/index.js';
import type { RequestTrace, SidecarContext } from '../context.js';
import type { GuardEnv } from './guard.js';
import { metadataMap, statusName, type Headers } from './wire.js';

const RANK: Record<Decision, number> = { allow: 0, monitor: 1, redact: 2, block: 3 };

export class CallState implements GuardEnv {
  readonly policy: CompiledPolicy;
  readonly fail: SidecarContext['fail'];
  readonly trace: RequestTrace;
  #decision: Decision = 'allow';
  #ended = false;
  #upstreamStart = 0;

  constructor(ctx: SidecarContext, rpcMethod: string, headers: Headers, operation: string) {
    // read the policy once per call: a hot reload mid-call must not mix two policies
    this.policy = ctx.policy();
    this.fail = ctx.fail;
    this.trace = ctx.telemetry.startRequest(metadataMap(headers), {
      protocol: 'grpc',
      operation,
      rpcMethod,
    });
  }

  /** remember the strongest decision seen on this call (for the request metric) */
  note(decision: Decision): void {
    if (RANK[decision] > RANK[this.#decision]) this.#decision = decision;
  }

  get decision(): Decision {
    return this.#decision;
  }

  get ended(): boolean {
    return this.#ended;
  }

  upstreamStarted(): void {
    this.#upstreamStart = performance.now();
  }

  upstreamDone(): void {
    if (this.#upstreamStart > 0) {
      this.trace.upstream((performance.now() - this.#upstreamStart) / 1000);
      this.#upstreamStart = 0;
    }
  }

  /** call end() exactly once: later calls are ignored */
  end(code: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.trace.end({ decision: this.#decision, status: statusName(code) });
  }
}
