import { AsyncLocalStorage } from "node:async_hooks";
import type { CallOptions, Channel, ClientMiddlewareCall } from "nice-grpc";

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
 * The deadline of the call being started, from `sendDeadline` to the
 * channel of `deadlineOnTheWire`: one client (and one channel) per backend
 * serves every call, so the deadline travels with the call, not with them.
 */
const startingCall = new AsyncLocalStorage<Date | undefined>();

/**
 * The same channel, whose calls carry their deadline on the wire
 * (grpc-timeout) when `sendDeadline` started them with one earlier than
 * their own. nice-grpc's deadline option only cancels locally (nice-grpc
 * hands grpc-js no deadline); this lets the next service (and its grpc-js,
 * which cancels the handler's signal) know when the caller stops waiting.
 */
export function deadlineOnTheWire(channel: Channel): Channel {
  const createCall = (method: string, given: Parameters<CreateCall>[1], ...rest: Parameters<CreateCall> extends [unknown, unknown, ...infer R] ? R : never) => {
    const deadline = startingCall.getStore();
    const givenMs = given instanceof Date ? given.getTime() : given;
    const earlier = deadline === undefined || givenMs < deadline.getTime() ? given : deadline;
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

/**
 * Client middleware that hands the call's `deadline` option (a Date, or
 * milliseconds from now, as nice-grpc's deadline middleware reads it) to the
 * channel of `deadlineOnTheWire`. It must be outside the middleware that
 * consumes the option (the kit's `ClientSettings.middleware` is).
 *
 * The call starts (grpc-js creates it) while the middleware below is first
 * stepped, so every step of it runs with the deadline in scope: `yield*`,
 * spelled out.
 */
export async function* sendDeadline<Request, Response>(
  call: ClientMiddlewareCall<Request, Response>,
  options: CallOptions & { deadline?: Date | number },
): AsyncGenerator<Response, Response | void, undefined> {
  const { deadline } = options;
  // Without one, explicitly none: not one that async context carried over from elsewhere.
  const at = deadline === undefined ? undefined : deadline instanceof Date ? deadline : new Date(Date.now() + deadline);
  // Unary (returns the response) or server stream (yields the responses).
  const inner = call.next(call.request, options) as AsyncGenerator<Response, Response | void, undefined>;
  const step = (next: () => Promise<IteratorResult<Response, Response | void>>) => startingCall.run(at, next);
  let result = await step(() => inner.next());
  try {
    while (!result.done) {
      let failure: { error: unknown } | undefined;
      try {
        yield result.value;
      } catch (error) {
        failure = { error };
      }
      result = await step(() => (failure ? inner.throw(failure.error) : inner.next()));
    }
    return result.value;
  } finally {
    // The caller stopped reading a stream: stop the call below too.
    if (!result.done) await inner.return(undefined as void);
  }
}
