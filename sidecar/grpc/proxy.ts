// Forwarding: grpc-js server handlers that relay raw message bytes to the upstream through a grpc.Client,
// inspecting ModelInfer both ways. Metadata, deadlines and cancellation follow the call (CallOptions.parent);
// response headers and trailers come back unchanged.
import {
  status as GrpcStatus,
  type Client,
  type ClientDuplexStream,
  type Metadata,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
  type StatusObject,
} from '@grpc/grpc-js';
import type { Readable, Writable } from 'node:stream';
import type { SidecarContext } from '../context.js';
import { GuardError } from '../errors.js';
import { CallState } from './call.js';
import { inspectRaw, inspectRequest, inspectResponse } from './guard.js';
import { guardStatus, passStatus, responseHeaders, upstreamMetadata } from './wire.js';

export const identity = (b: Buffer): Buffer => b;

export type Inspection = 'infer' | 'none' | 'raw';

/** the upstream failed before answering anything: the connection, not the model, is the problem */
function unreachable(st: StatusObject, gotHeaders: boolean): boolean {
  return st.code === GrpcStatus.UNAVAILABLE && !gotHeaders;
}

/** gen_ai.operation.name for a method: inference, the service's other (metadata) rpcs, or anything else */
export function operationOf(path: string): string {
  if (
    path === '/inference.GRPCInferenceService/ModelInfer' ||
    path === '/inference.GRPCInferenceService/ModelStreamInfer'
  )
    return 'infer';
  if (path.startsWith('/inference.GRPCInferenceService/') || path.startsWith('/grpc.health.v1.Health/'))
    return 'metadata';
  return 'other';
}

export class Forwarder {
  readonly ctx: SidecarContext;
  readonly client: Client;

  constructor(ctx: SidecarContext, client: Client) {
    this.ctx = ctx;
    this.client = client;
  }

  /** Unary method: ModelInfer is inspected both ways, the others are relayed as bytes. */
  unary(path: string, inspect: Inspection) {
    return (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>): void => {
      const st = new CallState(this.ctx, path, call.metadata, operationOf(path));
      const fail = (err: GuardError, rule?: string): void => {
        const s = guardStatus(err, st.trace, rule);
        callback(s);
        st.end(s.code);
      };

      let out = call.request;
      let systemPrompt: string | undefined;
      if (inspect === 'infer') {
        const r = inspectRequest(st, call.request);
        st.note(r.verdict.decision);
        if (!r.verdict.ok) return fail(r.verdict.error, r.verdict.rule);
        out = r.verdict.bytes;
        systemPrompt = r.systemPrompt;
      } else if (inspect === 'raw') {
        const v = inspectRaw(st, call.request, 'input');
        st.note(v.decision);
        if (!v.ok) return fail(v.error, v.rule);
      }

      let response: Buffer | undefined;
      let gotHeaders = false;
      st.upstreamStarted();
      const up = this.client.makeUnaryRequest<Buffer, Buffer>(
        path,
        identity,
        identity,
        out,
        upstreamMetadata(call.metadata, st.trace),
        { parent: call },
        (_err, value) => {
          response = value ?? undefined;
        },
      );
      up.on('metadata', (md: Metadata) => {
        gotHeaders = true;
        call.sendMetadata(responseHeaders(md));
      });
      up.on('status', (status: StatusObject) => {
        st.upstreamDone();
        if (call.cancelled || st.ended) return st.end(GrpcStatus.CANCELLED);
        if (status.code !== GrpcStatus.OK) {
          if (unreachable(status, gotHeaders))
            return fail(new GuardError('upstream_unavailable', { reason: status.details }));
          callback(passStatus(status));
          return st.end(status.code);
        }
        let bytes = response!;
        if (inspect === 'infer') {
          const v = inspectResponse(st, bytes, systemPrompt);
          st.note(v.decision);
          if (!v.ok) return fail(v.error, v.rule);
          bytes = v.bytes;
        } else if (inspect === 'raw') {
          const v = inspectRaw(st, bytes, 'output');
          st.note(v.decision);
          if (!v.ok) return fail(v.error, v.rule);
        }
        callback(null, bytes, status.metadata);
        st.end(GrpcStatus.OK);
      });
      call.on('cancelled', () => {
        // CallOptions.parent already cancels the upstream call; this accounts for it
        up.cancel();
        st.end(GrpcStatus.CANCELLED);
      });
    };
  }

  /**
   * Streaming methods relayed message by message (health Watch, allow-listed unknown methods), with
   * backpressure both ways. `raw` scans each message's bytes as text.
   */
  stream(path: string, inspect: Inspection) {
    return (call: ServerDuplexStream<Buffer, Buffer>): void => {
      const st = new CallState(this.ctx, path, call.metadata, operationOf(path));
      let gotHeaders = false;
      st.upstreamStarted();
      const up: ClientDuplexStream<Buffer, Buffer> = this.client.makeBidiStreamRequest<Buffer, Buffer>(
        path,
        identity,
        identity,
        upstreamMetadata(call.metadata, st.trace),
        { parent: call },
      );
      const fail = (err: GuardError, rule?: string): void => {
        if (st.ended) return;
        const s = guardStatus(err, st.trace, rule);
        up.cancel();
        call.emit('error', s);
        st.end(s.code);
      };
      pipeWithBackpressure(call, up, (buf) => {
        if (inspect !== 'raw') return buf;
        const v = inspectRaw(st, buf, 'input');
        st.note(v.decision);
        if (!v.ok) {
          fail(v.error, v.rule);
          return undefined;
        }
        return buf;
      });
      call.on('end', () => up.end());
      up.on('metadata', (md: Metadata) => {
        gotHeaders = true;
        call.sendMetadata(responseHeaders(md));
      });
      pipeWithBackpressure(up, call, (buf) => {
        if (inspect !== 'raw' || st.ended) return st.ended ? undefined : buf;
        const v = inspectRaw(st, buf, 'output');
        st.note(v.decision);
        if (!v.ok) {
          fail(v.error, v.rule);
          return undefined;
        }
        return buf;
      });
      onUpstreamFinished(up, (status) => {
        st.upstreamDone();
        if (st.ended) return;
        if (call.cancelled) return st.end(GrpcStatus.CANCELLED);
        if (status.code === GrpcStatus.OK) {
          call.end(status.metadata);
          return st.end(GrpcStatus.OK);
        }
        if (unreachable(status, gotHeaders))
          return fail(new GuardError('upstream_unavailable', { reason: status.details }));
        call.emit('error', passStatus(status));
        st.end(status.code);
      });
      call.on('cancelled', () => {
        up.cancel();
        st.end(GrpcStatus.CANCELLED);
      });
      call.on('error', () => {
        /* the status went out (or the peer left); nothing to add */
      });
    };
  }
}

/**
 * Relay messages from `from` to `to`, pausing `from` while `to` is over its high-water mark. `map`
 * may swallow a message (returns undefined) after failing the call.
 * Note: grpc-js completes a write once Node's HTTP/2 layer has queued it, regardless of the peer's
 * flow-control window, so `to` only backs up when grpc-js itself is behind (see docs/grpc.md).
 */
export function pipeWithBackpressure(
  from: Readable,
  to: Writable,
  map: (buf: Buffer) => Buffer | undefined,
): void {
  from.on('data', (buf: Buffer) => {
    const out = map(buf);
    if (out === undefined) return;
    if (!to.write(out)) from.pause();
  });
  to.on('drain', () => from.resume());
}

/**
 * The upstream call is over when grpc-js has delivered its status AND every message before it has
 * been read (a paused stream may still hold messages when the status arrives).
 */
export function onUpstreamFinished(
  up: ClientDuplexStream<Buffer, Buffer>,
  fn: (status: StatusObject) => void,
): void {
  let status: StatusObject | undefined;
  let ended = false;
  let done = false;
  const maybe = (): void => {
    if (!status || !ended || done) return;
    done = true;
    fn(status);
  };
  up.on('status', (s: StatusObject) => {
    status = s;
    // a failed call may be left with unread messages: the error outranks them
    if (s.code !== GrpcStatus.OK) ended = true;
    maybe();
  });
  up.on('end', () => {
    ended = true;
    maybe();
  });
  up.on('error', () => {
    /* reported through 'status' */
  });
}
