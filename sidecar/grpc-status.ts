// gRPC status codes, as fixed by the gRPC wire protocol. A table of our own rather than @grpc/grpc-js's
// enum: importing that loads the whole grpc-js library (~2 MiB RSS) into a sidecar that never uses it.
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcStatusName = keyof typeof GrpcStatus;
/** a status code (0–16) */
export type GrpcStatus = (typeof GrpcStatus)[GrpcStatusName];

const NAMES = new Map<number, string>(Object.entries(GrpcStatus).map(([name, code]) => [code, name]));

/** "PERMISSION_DENIED" for 7; the number itself for a code outside the table */
export function grpcStatusName(code: number): string {
  return NAMES.get(code) ?? String(code);
}

/** the code of a status name ("UNAVAILABLE" → 14), or undefined */
export function grpcStatusCode(name: string): number | undefined {
  return Object.hasOwn(GrpcStatus, name) ? GrpcStatus[name as GrpcStatusName] : undefined;
}
