// Every error the sidecar answers with, in one table: a stable code, the HTTP status, the gRPC status
// and a message template. docs/errors.md lists the same codes; sidecar/errors.test.ts keeps the two in sync.
// Messages name rules, routes and limits, never the matched text (it may be a secret).
import { GrpcStatus } from './grpc-status.js';

export interface ErrorDef {
  http: number;
  grpc: GrpcStatus;
  /** OpenAI-style error.type */
  type: string;
  /** template; {name} placeholders are filled from the params */
  message: string;
}

export const ERRORS = {
  policy_violation: {
    http: 403,
    grpc: GrpcStatus.PERMISSION_DENIED,
    type: 'policy_violation',
    message: 'blocked by inferguard policy: rule {rule} ({category})',
  },
  route_not_allowed: {
    http: 403,
    grpc: GrpcStatus.PERMISSION_DENIED,
    type: 'route_not_allowed',
    message: '{route} is not an inference route inferguard inspects; allow it with spec.{key} in the policy',
  },
  malformed_request: {
    http: 400,
    grpc: GrpcStatus.INVALID_ARGUMENT,
    type: 'invalid_request_error',
    message: 'malformed request: {reason}',
  },
  request_too_large: {
    http: 413,
    grpc: GrpcStatus.RESOURCE_EXHAUSTED,
    type: 'request_too_large',
    message: 'request exceeds {limit} ({max})',
  },
  unsupported_encoding: {
    http: 415,
    grpc: GrpcStatus.INVALID_ARGUMENT,
    type: 'invalid_request_error',
    message: '{encoding} cannot be inspected: {hint}',
  },
  upstream_unavailable: {
    http: 502,
    grpc: GrpcStatus.UNAVAILABLE,
    type: 'upstream_unavailable',
    message: 'model server unavailable: {reason}',
  },
  upstream_timeout: {
    http: 504,
    grpc: GrpcStatus.DEADLINE_EXCEEDED,
    type: 'upstream_timeout',
    message: 'model server did not answer in time',
  },
  engine_fault: {
    http: 503,
    grpc: GrpcStatus.UNAVAILABLE,
    type: 'engine_fault',
    message: 'inferguard could not scan this request (fail closed)',
  },
  not_ready: {
    http: 503,
    grpc: GrpcStatus.UNAVAILABLE,
    type: 'not_ready',
    message: 'inferguard is {state}',
  },
  output_blocked: {
    http: 403,
    grpc: GrpcStatus.PERMISSION_DENIED,
    type: 'policy_violation',
    message: 'blocked by inferguard policy: rule {rule} ({category})',
  },
} as const satisfies Record<string, ErrorDef>;

export type ErrorCode = keyof typeof ERRORS;

export function errorMessage(code: ErrorCode, params: Record<string, string | number> = {}): string {
  return ERRORS[code].message.replace(/\{(\w+)\}/g, (_, k: string) => String(params[k] ?? `{${k}}`));
}

/** An error the adapters turn into their wire form (HTTP status + JSON, or gRPC status + details). */
export class GuardError extends Error {
  readonly code: ErrorCode;
  readonly params: Record<string, string | number>;
  constructor(code: ErrorCode, params: Record<string, string | number> = {}) {
    super(errorMessage(code, params));
    this.name = 'GuardError';
    this.code = code;
    this.params = params;
  }
  get http(): number {
    return ERRORS[this.code].http;
  }
  get grpc(): GrpcStatus {
    return ERRORS[this.code].grpc;
  }
  get type(): string {
    return ERRORS[this.code].type;
  }
}
