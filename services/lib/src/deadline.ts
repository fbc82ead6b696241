import { ServerInterceptingCall, type ServerInterceptor } from "@grpc/grpc-js";
import type { CallContext } from "nice-grpc";

/**
 * grpc-js reads a call's deadline from its `grpc-timeout` header and then
 * removes the header; nice-grpc's CallContext does not expose the deadline
 * either. This interceptor hands it to the handlers under a reserved
 * metadata key (epoch milliseconds). The key is overwritten or removed on
 * every call, so a client cannot forge it.
 */
export const DEADLINE_METADATA_KEY = "meshcart-internal-deadline-ms";

export const exposeDeadline: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    start(next) {
      next({
        onReceiveMetadata(metadata, nextMetadata) {
          metadata.remove(DEADLINE_METADATA_KEY);
          const deadline = call.getDeadline();
          const ms = deadline instanceof Date ? deadline.getTime() : deadline;
          if (Number.isFinite(ms)) metadata.set(DEADLINE_METADATA_KEY, String(ms));
          nextMetadata(metadata);
        },
      });
    },
  });

/** The deadline the caller gave this call, or undefined when it gave none. */
export function callDeadline(context: Pick<CallContext, "metadata">): Date | undefined {
  const value = context.metadata.get(DEADLINE_METADATA_KEY);
  const ms = typeof value === "string" ? Number(value) : NaN;
  return Number.isFinite(ms) ? new Date(ms) : undefined;
}
