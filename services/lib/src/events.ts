import { connect, headers as newHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { JetStreamApiError, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { Context } from "@opentelemetry/api";
import { z } from "zod";
import type { ConfigShape } from "./config.js";
import type { Logger } from "./logger.js";
import { contextFromTraceparent, injectTraceContext } from "./tracing.js";

/**
 * The event contract between the services that publish on NATS JetStream
 * and those that consume (order and fulfillment today): the connection,
 * the streams and their subjects, and how trace context rides in message
 * headers. Imported as `@meshcart/lib/events`, so that services without a
 * broker never load the NATS client.
 */

/** What a service that talks to the broker reads. */
export const natsConfig = {
  NATS_URL: z
    .string()
    .regex(/^(nats|tls):\/\/[^\s,]+(,(nats|tls):\/\/[^\s,]+)*$/, "must be one or more nats:// URLs, comma-separated")
    .optional()
    .describe(
      "NATS server(s) with JetStream, comma-separated nats:// URLs. order: where its outbox relay publishes the order events (unset: the relay is off and the events wait in the order log); fulfillment: required.",
    ),
} satisfies ConfigShape;

/** A JetStream stream as this project declares it: the name, its subjects and its limits. */
export interface StreamDefinition {
  name: string;
  subjects: string[];
  config: Partial<StreamConfig>;
}

const SECOND_NS = 1_000_000_000;

/**
 * The order events (meshcart.events.v1.OrderEvent), one subject per kind.
 * Limits retention: consumers do not remove what they read, so a new
 * consumer (or a replay) finds a week of history. The duplicate window is
 * how long a republished event id (Nats-Msg-Id) is recognised and dropped.
 */
export const ORDER_EVENTS: StreamDefinition = {
  name: "MESHCART_ORDERS",
  subjects: ["meshcart.orders.>"],
  config: {
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: 7 * 24 * 3600 * SECOND_NS,
    max_bytes: 256 * 1024 * 1024,
    duplicate_window: 120 * SECOND_NS,
    num_replicas: 1,
  },
};

export type OrderEventKind = "confirmed" | "cancelled" | "rejected" | "failed";

/** The subject of an order event of one kind. */
export function orderEventSubject(kind: OrderEventKind): string {
  return `meshcart.orders.${kind}`;
}

/**
 * Messages a consumer gave up on (dead letters), one subject per consumer:
 * kept a month for an operator, with the original subject, stream sequence,
 * attempts and error in their headers.
 */
export const DEAD_LETTERS: StreamDefinition = {
  name: "MESHCART_DEAD_LETTERS",
  subjects: ["meshcart.deadletter.>"],
  config: {
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: 30 * 24 * 3600 * SECOND_NS,
    max_bytes: 64 * 1024 * 1024,
    duplicate_window: 120 * SECOND_NS,
    num_replicas: 1,
  },
};

export function deadLetterSubject(consumer: string): string {
  return `meshcart.deadletter.${consumer}`;
}

/** Header names of meshcart's messages besides the W3C trace context. */
export const EventHeaders = {
  /** The protobuf message type of the body, e.g. meshcart.events.v1.OrderEvent. */
  messageType: "Meshcart-Message-Type",
  /** The event id (also Nats-Msg-Id, which JetStream consumes for deduplication). */
  eventId: "Meshcart-Event-Id",
  /** On a dead letter: where it came from and why it was given up. */
  deadLetterSubject: "Meshcart-Original-Subject",
  deadLetterSequence: "Meshcart-Original-Sequence",
  deadLetterAttempts: "Meshcart-Attempts",
  deadLetterReason: "Meshcart-Reason",
} as const;

/**
 * Creates the stream, or brings an existing one to this definition: every
 * service that uses a stream ensures it at start, in whatever order they
 * start, and the same definition converges.
 */
export async function ensureStream(jsm: JetStreamManager, definition: StreamDefinition): Promise<void> {
  const config = { ...definition.config, name: definition.name, subjects: definition.subjects };
  try {
    await jsm.streams.add(config);
  } catch (error) {
    // 10058: the name is taken with another configuration (an older one).
    if (error instanceof JetStreamApiError && error.code === 10058) {
      await jsm.streams.update(definition.name, config);
      return;
    }
    throw error;
  }
}

/**
 * Connects to the broker and keeps the connection for the life of the
 * process: reconnecting forever, first connection included (a broker that
 * starts after the service is normal in a cluster). Resolves once
 * connected; `signal` gives up waiting. Losing and regaining the
 * connection is logged once each.
 */
export async function connectBroker(url: string, name: string, logger: Logger, signal?: AbortSignal): Promise<NatsConnection> {
  const servers = url.split(",");
  for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
    if (signal?.aborted) throw new Error("stopped while waiting for the broker");
    try {
      const connection = await connect({
        servers,
        name,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        // Connection losses show up within seconds, not after two minutes.
        pingInterval: 10_000,
        maxPingOut: 2,
        timeout: 2_000,
      });
      void watchStatus(connection, logger);
      logger.info({ server: connection.getServer() }, "connected to the broker");
      return connection;
    } catch (error) {
      logger.warn({ err: error, retry_in_ms: delay }, "broker not reachable yet");
      await pause(delay, signal);
    }
  }
}

/** Sleeps `ms`, less when `signal` aborts first. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

async function watchStatus(connection: NatsConnection, logger: Logger): Promise<void> {
  let down = false;
  for await (const status of connection.status()) {
    if (status.type === "disconnect" && !down) {
      down = true;
      logger.warn({ server: status.server }, "lost the broker connection; reconnecting");
    } else if (status.type === "reconnect" && down) {
      down = false;
      logger.info({ server: status.server }, "broker connection back");
    }
  }
}

/** Headers of a new message, with the active span's W3C trace context. */
export function messageHeaders(values: Record<string, string>): MsgHdrs {
  const headers = newHeaders();
  for (const [key, value] of Object.entries(values)) headers.set(key, value);
  injectTraceContext((key, value) => headers.set(key, value));
  return headers;
}

/** The span a message's traceparent header names, as a parent context; the active context when it has none. */
export function messageTraceContext(headers: MsgHdrs | undefined): Context {
  return contextFromTraceparent(headers?.get("traceparent") || undefined);
}

export type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
