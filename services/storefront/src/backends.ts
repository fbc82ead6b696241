import { ClientError, Status, type Channel, type CompatServiceDefinition } from "nice-grpc";
import { RichClientError, RichServerError } from "nice-grpc-error-details";
import { createServiceClient, openChannel, ServerError, type ClientSettings, type Logger, type ServiceClient } from "@meshcart/lib";
import { FulfillmentServiceDefinition } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { deadlineOnTheWire, sendDeadline } from "./deadlines.js";

export interface BackendAddresses {
  order: string;
  inventory: string;
  payment: string;
  fulfillment: string;
}

export type Backend = keyof BackendAddresses;

/**
 * Clients of the services behind the storefront. Every call gives its own
 * `deadline` (and the handler's `signal`) in its call options.
 */
export interface Clients {
  order: ServiceClient<typeof OrderServiceDefinition>;
  inventory: ServiceClient<typeof InventoryServiceDefinition>;
  payment: ServiceClient<typeof PaymentServiceDefinition>;
  fulfillment: ServiceClient<typeof FulfillmentServiceDefinition>;
}

export interface BackendSettings extends Partial<Pick<ClientSettings, "registry">> {
  /**
   * Deadline of a call that gives none (a bound, not a policy: the handlers
   * give each call the deadline of deadlines.ts).
   */
  fallbackTimeoutMs: number;
}

/**
 * The storefront's connections to order, inventory, payment and
 * fulfillment: one channel and one client each, built at start for the life
 * of the process. Per call, the call options carry what is the call's own:
 * its deadline, locally and on the wire (deadlines.ts), and its signal; the
 * kit's clients pass the correlation id along.
 *
 * The edge does not retry: in the cluster the mesh does (with a budget), and
 * a shopper's client may retry, PlaceOrder being idempotent on request_id.
 */
export class Backends {
  readonly clients: Clients;
  private readonly channels: Record<Backend, Channel>;

  constructor(addresses: BackendAddresses, logger: Logger, settings: BackendSettings) {
    this.channels = {
      order: openChannel(addresses.order),
      inventory: openChannel(addresses.inventory),
      payment: openChannel(addresses.payment),
      fulfillment: openChannel(addresses.fulfillment),
    };
    const client = <D extends CompatServiceDefinition>(definition: D, name: Backend) =>
      createServiceClient(
        definition,
        deadlineOnTheWire(this.channels[name]),
        {
          registry: settings.registry,
          address: addresses[name],
          attemptTimeoutMs: settings.fallbackTimeoutMs,
          retries: 0,
          middleware: sendDeadline,
        },
        logger,
      );
    this.clients = {
      order: client(OrderServiceDefinition, "order"),
      inventory: client(InventoryServiceDefinition, "inventory"),
      payment: client(PaymentServiceDefinition, "payment"),
      fulfillment: client(FulfillmentServiceDefinition, "fulfillment"),
    };
  }

  close(): void {
    for (const channel of Object.values(this.channels)) channel.close();
  }
}

/** Messages that replace a status's own, per call (e.g. what to do after a DEADLINE_EXCEEDED). */
export type Hints = Partial<Record<Status, string>>;

/**
 * What a failed internal call becomes at the edge. Refusals the shopper can
 * act on pass through with their message and details (NOT_FOUND,
 * ALREADY_EXISTS, FAILED_PRECONDITION; INVALID_ARGUMENT too, though the edge
 * validates first so it should not happen); shed load stays
 * RESOURCE_EXHAUSTED, with its message and RetryInfo ("the shop is busy":
 * nothing was done, and nothing retries it at once, whereas UNAVAILABLE
 * would read as an outage and be retried by the mesh); transient faults
 * become UNAVAILABLE; a timeout stays DEADLINE_EXCEEDED; anything else is
 * our fault: INTERNAL, logged, without internals. Errors that are not gRPC
 * statuses (a cancelled call) are left to the kit's error boundary.
 */
export function edgeError(error: unknown, backend: Backend, logger: Logger, hints: Hints = {}): unknown {
  if (!(error instanceof ClientError)) return error;
  const extra = error instanceof RichClientError ? error.extra : [];
  const hint = hints[error.code];
  switch (error.code) {
    case Status.INVALID_ARGUMENT:
      logger.warn({ backend, code: Status[error.code], details: error.details }, "the edge let through a request that the service refused");
      return new RichServerError(error.code, error.details, extra);
    case Status.NOT_FOUND:
    case Status.ALREADY_EXISTS:
    case Status.FAILED_PRECONDITION:
      return new RichServerError(error.code, hint ?? error.details, extra);
    case Status.DEADLINE_EXCEEDED:
      return new ServerError(Status.DEADLINE_EXCEEDED, hint ?? `${backend} did not answer within the call's deadline`);
    case Status.CANCELLED:
      return new ServerError(Status.CANCELLED, hint ?? "the call was cancelled");
    case Status.RESOURCE_EXHAUSTED:
      return new RichServerError(error.code, error.details, extra);
    case Status.UNAVAILABLE:
    case Status.ABORTED:
      logger.warn({ backend, code: Status[error.code], details: error.details }, `${backend} unavailable`);
      return new ServerError(Status.UNAVAILABLE, hint ?? `${backend} is unavailable, try again`);
    default:
      logger.error({ backend, code: Status[error.code], details: error.details }, `${backend} failed`);
      return new ServerError(Status.INTERNAL, "internal error");
  }
}
