import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import type { Logger } from "@meshcart/lib";
import { ORDER_EVENTS, connectBroker, ensureStream, pause, type MsgHdrs, type NatsConnection } from "@meshcart/lib/events";
import type { EventMessage } from "./event-messages.js";

/** Where the relay hands messages: JetStream in the service, a fake in unit tests. */
export interface EventPublisher {
  /**
   * Resolves once the broker has stored the message ("duplicate": it had it
   * already, under the same event id); rejects when it cannot say so in
   * time. Either way the message may have been stored: publishing again with
   * the same id is always safe.
   */
  publish(message: EventMessage, headers: MsgHdrs): Promise<"stored" | "duplicate">;
}

/** Publishes to the order events stream, which it creates (or updates) at start. */
export class JetStreamPublisher implements EventPublisher {
  private constructor(
    private readonly connection: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly timeoutMs: number,
  ) {}

  /** Connects (waiting for the broker as long as it takes, or until `signal`) and ensures the stream. */
  static async start(url: string, timeoutMs: number, logger: Logger, signal: AbortSignal): Promise<JetStreamPublisher> {
    const connection = await connectBroker(url, "order-outbox-relay", logger, signal);
    try {
      for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
        try {
          await ensureStream(await jetstreamManager(connection, { timeout: timeoutMs }), ORDER_EVENTS);
          break;
        } catch (error) {
          if (signal.aborted) throw error;
          logger.warn({ err: error, stream: ORDER_EVENTS.name, retry_in_ms: delay }, "cannot create the order events stream yet");
          await pause(delay, signal);
        }
      }
      return new JetStreamPublisher(connection, jetstream(connection, { timeout: timeoutMs }), timeoutMs);
    } catch (error) {
      await connection.close();
      throw error;
    }
  }

  async publish(message: EventMessage, headers: MsgHdrs): Promise<"stored" | "duplicate"> {
    const ack = await this.js.publish(message.subject, message.body, {
      msgID: message.eventId,
      headers,
      timeout: this.timeoutMs,
      // Only the stream that holds these subjects may store them: a message
      // that landed elsewhere (a misconfigured broker) is an error, not a success.
      expect: { streamName: ORDER_EVENTS.name },
    });
    return ack.duplicate ? "duplicate" : "stored";
  }

  async close(): Promise<void> {
    await this.connection.drain().catch(() => this.connection.close());
  }
}
