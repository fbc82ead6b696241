import { AsyncLocalStorage } from "node:async_hooks";

/**
 * What a log line, an outbound call or a span needs to know about the
 * request being served. Set by the server middleware, read anywhere below it.
 */
export interface RequestContext {
  /** The correlation id a shopper quotes to support (x-request-id). */
  correlationId: string;
  /**
   * Full gRPC method path, e.g. /meshcart.inventory.v1.InventoryService/GetProduct;
   * absent for work that runs outside a call (a saga resumed by recovery).
   */
  method?: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

export function currentRequest(): RequestContext | undefined {
  return storage.getStore();
}

export function runInRequest<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

/**
 * Async generators (nice-grpc middleware) resume in the context they were
 * created in, so a middleware enters the context for the rest of its
 * execution rather than wrapping a callback.
 */
export function enterRequest(context: RequestContext): void {
  storage.enterWith(context);
}

export const CORRELATION_HEADER = "x-request-id";
