import { ServerInterceptingCall, type ServerInterceptor } from "@grpc/grpc-js";
import { createServer, ServerError, Status, type Server } from "nice-grpc";
import type { CompatServiceDefinition } from "nice-grpc";
import { errorDetailsServerMiddleware } from "nice-grpc-error-details";

/** What a stub learnt about one call it received, from grpc-js itself. */
export interface Received {
  path: string;
  /** Time left until the call's deadline when it arrived (Infinity: none). */
  remainingMs: number;
  requestId: string | undefined;
}

/**
 * A gRPC server standing in for a service behind the storefront: its
 * handlers decide how it behaves (answer, hang, be slow), and every call's
 * wire deadline (grpc-timeout, as grpc-js parsed it) and x-request-id are
 * recorded, independently of the service kit.
 */
export class Stub {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly received: Received[],
    /** Calls that were cancelled (deadline or caller) while a handler waited. */
    readonly cancelled: string[],
  ) {}

  static async start<D extends CompatServiceDefinition>(definition: D, implementation: (hooks: StubHooks) => object): Promise<Stub> {
    const received: Received[] = [];
    const cancelled: string[] = [];
    const record: ServerInterceptor = (method, call) =>
      new ServerInterceptingCall(call, {
        start(next) {
          next({
            onReceiveMetadata(metadata, nextMetadata) {
              const deadline = call.getDeadline();
              const ms = deadline instanceof Date ? deadline.getTime() : deadline;
              const requestId = metadata.get("x-request-id")[0];
              received.push({ path: method.path, remainingMs: ms - Date.now(), requestId: typeof requestId === "string" ? requestId : undefined });
              nextMetadata(metadata);
            },
          });
        },
      });
    // Rich error details (RetryInfo, BadRequest) travel as the services send them.
    const server = createServer({ interceptors: [record] }).use(errorDetailsServerMiddleware);
    server.add(definition, complete(definition, implementation({ cancelled })) as never);
    const port = await server.listen("127.0.0.1:0");
    return new Stub(server, port, received, cancelled);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The calls received on one method, e.g. "/meshcart.inventory.v1.InventoryService/ListProducts". */
  calls(method: string): Received[] {
    return this.received.filter((r) => r.path.endsWith(`/${method}`));
  }

  async close(): Promise<void> {
    this.server.forceShutdown();
  }
}

/** The given handlers, and UNIMPLEMENTED for every other method of the service. */
function complete(definition: CompatServiceDefinition, handlers: object): Record<string, unknown> {
  const methods = (definition as { methods?: Record<string, { responseStream: boolean }> }).methods ?? {};
  const full: Record<string, unknown> = { ...handlers };
  for (const [name, method] of Object.entries(methods)) {
    if (name in full) continue;
    full[name] = method.responseStream
      ? // eslint-disable-next-line require-yield
        async function* () {
          throw new ServerError(Status.UNIMPLEMENTED, `the stub does not implement ${name}`);
        }
      : async () => {
          throw new ServerError(Status.UNIMPLEMENTED, `the stub does not implement ${name}`);
        };
  }
  return full;
}

export interface StubHooks {
  cancelled: string[];
}

/** Waits until the call is cancelled (its deadline passed or its caller gave up), then records it. */
export function hangUntilCancelled(signal: AbortSignal, what: string, hooks: StubHooks): Promise<never> {
  return new Promise((_resolve, reject) => {
    const onAbort = () => {
      hooks.cancelled.push(what);
      reject(new ServerError(Status.CANCELLED, `${what} cancelled`));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}
