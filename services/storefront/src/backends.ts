import { ClientError, Status, type Channel } from "nice-grpc";
import { RichClientError, RichServerError } from "nice-grpc-error-details";
import { createServiceClient, openChannel, ServerError, type ClientSettings, type Logger, type ServiceClient } from "@meshcart/lib";
import { FulfillmentServiceDefinition } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { withDeadline } from "./deadlines.js";

export interface BackendAddresses {
  order: string;
  inventory: string;
  payment: string;
  fulfillment: string;
}

export type Backend = keyof BackendAddresses;

/** Clients of the services behind the storefront, bound to one deadline. */
export interface Clients {
  order: ServiceClient<typeof OrderServiceDefinition>;
  inventory: ServiceClient<typeof InventoryServiceDefinition>;
  payment: ServiceClient<typeof PaymentServiceDefinition>;
  fulfillment: ServiceClient<typeof FulfillmentServiceDefinition>;
}

/**
 * The storefront's connections to order, inventory, payment and
 * fulfillment: one channel
 * each for the life of the process, and per call a set of clients whose
 * every call carries that call's deadline, locally and on the wire. The kit's
 * clients pass the correlation id along.
 *
 * The edge does not retry: in the cluster the mesh does (with a budget), and
 * a shopper's client may retry, PlaceOrder being idempotent on request_id.
 */
export class Backends {
  private readonly channels: Record<Backend, Channel>;

  constructor(
    private readonly addresses: BackendAddresses,
    private readonly logger: Logger,
    /** Client settings shared by every call (e.g. a metrics registry). */
    private readonly shared: Partial<ClientSettings> = {},
  ) {
    this.channels = {
      order: openChannel(addresses.order),
      inventory: openChannel(addresses.inventory),
      payment: openChannel(addresses.payment),
      fulfillment: openChannel(addresses.fulfillment),
    };
  }

  at(deadline: Date): Clients {
    const settings = (name: Backend): ClientSettings => ({
      ...this.shared,
      address: this.addresses[name],
      attemptTimeoutMs: Math.max(1, deadline.getTime() - Date.now()),
      retries: 0,
    });
    const channel = (name: Backend) => withDeadline(this.channels[name], deadline);
    return {
      order: createServiceClient(OrderServiceDefinition, channel("order"), settings("order"), this.logger),
      inventory: createServiceClient(InventoryServiceDefinition, channel("inventory"), settings("inventory"), this.logger),
      payment: createServiceClient(PaymentServiceDefinition, channel("payment"), settings("payment"), this.logger),
      fulfillment: createServiceClient(FulfillmentServiceDefinition, channel("fulfillment"), settings("fulfillment"), this.logger),
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
