import { EventEmitter } from "node:events";
import pg from "pg";
import type { Logger } from "@meshcart/lib";
import { NOTIFY_CHANNEL } from "./event-store.js";

/**
 * Tells waiters (CreateOrder, CancelOrder, WatchOrder) that an order's log
 * grew, whichever replica appended to it: every append sends a Postgres
 * NOTIFY and each replica keeps one LISTEN connection. Waiters also re-read
 * on a timer, so a notification lost while reconnecting only delays them.
 */
export class OrderNotifier {
  private readonly emitter = new EventEmitter();
  private client: pg.Client | undefined;
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly databaseUrl: string,
    private readonly logger: Logger,
  ) {
    this.emitter.setMaxListeners(0);
  }

  /** Starts listening in the background; it reconnects until stopped. */
  start(): void {
    this.loop = this.listen();
  }

  /** Resolves on the next change of `orderId`, after `fallbackMs`, or on abort. */
  changed(orderId: string, fallbackMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) {
        resolve();
        return;
      }
      const done = () => {
        clearTimeout(timer);
        this.emitter.off(orderId, done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, fallbackMs);
      this.emitter.on(orderId, done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Lets a local append wake local waiters without the database round trip. */
  notify(orderId: string): void {
    this.emitter.emit(orderId);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client?.end().catch(() => undefined);
    await this.loop;
  }

  private async listen(): Promise<void> {
    while (!this.stopped) {
      const client = new pg.Client({ connectionString: this.databaseUrl, application_name: "order-notifier" });
      const lost = new Promise<void>((resolve) => {
        client.once("end", resolve);
        client.on("error", (error) => {
          if (!this.stopped) this.logger.warn({ err: error }, "order notification connection lost");
          resolve();
        });
      });
      client.on("notification", (message) => {
        if (message.payload) this.emitter.emit(message.payload);
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
        this.client = client;
        await lost;
      } catch (error) {
        if (!this.stopped) this.logger.warn({ err: error }, "cannot listen for order notifications yet");
      }
      this.client = undefined;
      await client.end().catch(() => undefined);
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}
