import { status as GrpcStatus } from "@grpc/grpc-js";
import { createLogger, createServiceClient, openChannel } from "@meshcart/lib";
import { FulfillmentServiceDefinition } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { StorefrontServiceDefinition } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import type { Victim } from "./plan.js";

/** One call of a probe: the status it ended with ("OK" or a gRPC code name) and how long it took. */
export interface CallResult {
  probe: string;
  service: Victim;
  code: string;
  ms: number;
}

export interface Probe {
  /** e.g. "inventory ListProducts". */
  name: string;
  service: Victim;
  run(deadlineMs: number): Promise<CallResult>;
}

/**
 * One call per service that needs the database to answer, as a shopper's
 * traffic would make it: reads, and a checkout that the order service must
 * refuse before it writes anything while its database is away. Each call has
 * its own deadline and no retry, so a call that hangs shows as its full
 * deadline and DEADLINE_EXCEEDED rather than being hidden by a retry.
 */
export function databaseProbes(address: (service: Victim) => string, runId: string): { probes: Probe[]; close(): void } {
  const logger = createLogger({ service: "chaos", version: "dev", level: "silent" });
  const channels = new Map<Victim, ReturnType<typeof openChannel>>();
  const channel = (service: Victim) => {
    let open = channels.get(service);
    if (!open) channels.set(service, (open = openChannel(address(service))));
    return open;
  };
  const client = <D extends Parameters<typeof createServiceClient>[0]>(definition: D, service: Victim) =>
    createServiceClient(definition, channel(service), { address: address(service), attemptTimeoutMs: 30_000, retries: 0 }, logger);

  const inventory = client(InventoryServiceDefinition, "inventory");
  const payment = client(PaymentServiceDefinition, "payment");
  const order = client(OrderServiceDefinition, "order");
  const storefront = client(StorefrontServiceDefinition, "storefront");
  const fulfillment = client(FulfillmentServiceDefinition, "fulfillment");
  let checkouts = 0;

  const probe = (name: string, service: Victim, call: (deadline: number) => Promise<unknown>): Probe => ({
    name,
    service,
    async run(deadlineMs) {
      const begun = performance.now();
      let code = "OK";
      try {
        await call(deadlineMs);
      } catch (error) {
        code = codeName(error);
      }
      return { probe: name, service, code, ms: Math.round(performance.now() - begun) };
    },
  });

  return {
    probes: [
      probe("inventory ListProducts", "inventory", (deadline) => inventory.listProducts({ pageSize: 5, pageToken: "" }, { deadline })),
      probe("payment ListPayments", "payment", (deadline) =>
        payment.listPayments({ filter: { $case: "customerId", value: "chaos-probe" }, pageSize: 1, pageToken: "" }, { deadline }),
      ),
      probe("order ListOrders", "order", (deadline) => order.listOrders({ customerId: "chaos-probe", pageSize: 1, pageToken: "" }, { deadline })),
      probe("order CreateOrder", "order", (deadline) =>
        order.createOrder(
          {
            requestId: `chaos.${runId}.probe.${++checkouts}`,
            customerId: "chaos-probe",
            items: [{ sku: "MESH-MUG", quantity: 1 }],
            paymentMethod: "pm_card_visa",
          },
          { deadline },
        ),
      ),
      probe("fulfillment ListShipments", "fulfillment", (deadline) => fulfillment.listShipments({ pageSize: 1, pageToken: "", state: 0 }, { deadline })),
      probe("storefront ListProducts", "storefront", (deadline) => storefront.listProducts({ pageSize: 5, pageToken: "" }, { deadline })),
    ],
    close() {
      for (const open of channels.values()) open.close();
    },
  };
}

export function codeName(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "number") return GrpcStatus[code] ?? `CODE_${code}`;
  return error instanceof Error ? `CLIENT_ERROR: ${error.message}` : "CLIENT_ERROR";
}
