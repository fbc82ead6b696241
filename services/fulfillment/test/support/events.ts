import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import { createClientFactory, Metadata } from "nice-grpc";
import { errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { FulfillmentServiceDefinition, type FulfillmentServiceClient } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { StorefrontServiceDefinition, type StorefrontServiceClient } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { OrderEvent } from "@meshcart/contracts/meshcart/events/v1/order_events.js";
import { mintShopperToken } from "@meshcart/lib";
import { SHOP_TOKENS, type Shop } from "@meshcart/testing/shop.js";

const clients = createClientFactory().use(errorDetailsClientMiddleware);

export function storefrontOf(shop: Shop): StorefrontServiceClient {
  return clients.create(StorefrontServiceDefinition, shop.channel("storefront"));
}

export function fulfillmentOf(shop: Shop): FulfillmentServiceClient {
  return clients.create(FulfillmentServiceDefinition, shop.channel("fulfillment"));
}

export async function as(customerId: string): Promise<Metadata> {
  const token = await mintShopperToken({ ...SHOP_TOKENS, customerId, ttlSeconds: 600 });
  return Metadata({ authorization: `Bearer ${token}` });
}

/**
 * Polls `probe` until it returns a value other than undefined, or fails
 * after `timeoutMs`. The bound only keeps a broken test from hanging.
 */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last instanceof Error ? last.message : String(last)})` : ""}`);
    await sleep(intervalMs);
  }
}

let serial = 0;
export function unique(prefix: string): string {
  serial += 1;
  return `${prefix}-${serial}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A client of the shop's broker, for what the services do not show: the streams' messages. */
export class BrokerProbe {
  private constructor(readonly connection: NatsConnection) {}

  static async open(shop: Shop): Promise<BrokerProbe> {
    return new BrokerProbe(await connect({ servers: shop.nats.url, name: "test-probe" }));
  }

  /** Every message of a stream on `subject` (a filter), oldest first. */
  async messages(stream: string, subject = ">"): Promise<StoredMsg[]> {
    const jsm = await jetstreamManager(this.connection);
    const info = await jsm.streams.info(stream);
    const found: StoredMsg[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      try {
        const message = await jsm.streams.getMessage(stream, { seq });
        if (message && (subject === ">" || message.subject === subject)) found.push(message);
      } catch {
        // A deleted sequence.
      }
    }
    return found;
  }

  /** The order events of one order in the stream, decoded, in stream order. */
  async orderEvents(orderId: string): Promise<{ subject: string; msgId: string; event: OrderEvent; headers: Record<string, string> }[]> {
    return (await this.messages("MESHCART_ORDERS"))
      .map((m) => ({
        subject: m.subject,
        msgId: m.header.get("Nats-Msg-Id"),
        event: OrderEvent.decode(m.data),
        headers: Object.fromEntries([...m.header].map(([key, values]) => [key, values[0] ?? ""])),
      }))
      .filter((m) => m.event.orderId === orderId);
  }

  close(): Promise<void> {
    return this.connection.close();
  }
}
