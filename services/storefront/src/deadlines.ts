import type { Channel } from "nice-grpc";

/** How long calls may take; see the STOREFRONT_*_MS variables. */
export interface DeadlinePolicy {
  /** Deadline of a unary call that brings none. */
  defaultMs: number;
  /** Cap on a unary call's deadline. */
  maxMs: number;
  /** Deadline of a stream that brings none, and cap on the one it brings. */
  streamMaxMs: number;
}

export type CallKind = "unary" | "stream";

/**
 * The deadline a storefront call works within, and that every call it makes
 * to the services behind carries: the caller's own, capped, or the default
 * when the caller brings none. A stream has its own, longer bound, so that
 * the unary default never cuts a healthy TrackOrder short.
 */
export function effectiveDeadline(incoming: Date | undefined, kind: CallKind, policy: DeadlinePolicy, now = Date.now()): Date {
  const cap = kind === "stream" ? policy.streamMaxMs : policy.maxMs;
  const fallback = kind === "stream" ? policy.streamMaxMs : policy.defaultMs;
  if (!incoming) return new Date(now + fallback);
  return new Date(Math.min(incoming.getTime(), now + cap));
}

/**
 * A deadline before `deadline`, keeping back a little time to answer: an
 * optional part of a composed answer gives up while there is still time to
 * send what the other parts returned.
 */
export function partDeadline(deadline: Date, partTimeoutMs: number, now = Date.now()): Date {
  const remaining = deadline.getTime() - now;
  const reserve = Math.min(200, Math.max(0, remaining) * 0.1);
  return new Date(Math.min(now + partTimeoutMs, deadline.getTime() - reserve));
}

type CreateCall = Channel["createCall"];

/**
 * The same channel, whose calls carry `deadline` on the wire (grpc-timeout)
 * when it is earlier than their own. nice-grpc's deadline option only
 * cancels locally; this lets the next service (and its grpc-js, which
 * cancels the handler's signal) know when the caller stops waiting.
 */
export function withDeadline(channel: Channel, deadline: Date): Channel {
  const createCall = (method: string, given: Parameters<CreateCall>[1], ...rest: Parameters<CreateCall> extends [unknown, unknown, ...infer R] ? R : never) => {
    const givenMs = given instanceof Date ? given.getTime() : given;
    const earlier = givenMs < deadline.getTime() ? given : deadline;
    return channel.createCall(method, earlier, ...rest);
  };
  return new Proxy(channel, {
    get(target, property) {
      if (property === "createCall") return createCall;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
