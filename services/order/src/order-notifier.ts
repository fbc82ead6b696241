import pg from "pg";
import type { Logger } from "@meshcart/lib";
import { NOTIFY_CHANNEL } from "./event-store.js";
import { isFinal, type Order, type OrderState } from "./order-state.js";
import { sleep } from "@meshcart/lib";

type Listener = (version: number, order: Order | undefined) => void;

/** Waiting for an order's next change, from the moment of subscribing. */
export interface Subscription {
  /**
   * Resolves with the order as appended when this process appended it (no
   * read needed), with undefined when the log grew elsewhere (read it), or
   * when `ms` passed or `signal` aborted first (read it, or give up).
   */
  next(ms: number, signal?: AbortSignal): Promise<Order | undefined>;
  /** Stops listening; always call it. */
  cancel(): void;
}

/**
 * Tells waiters (CreateOrder, CancelOrder, WatchOrder) that an order's log
 * grew. An append in this process hands them the order itself; an append
 * anywhere sends a Postgres NOTIFY ("<order id> <version> <writer> <state>"), which
 * each replica's one LISTEN connection turns into a change without the
 * order, except for its own appends (handed over already: a waiter woken
 * by their NOTIFY first would read what it is about to be given). A waiter
 * ignores changes to versions it has seen. Waiters also re-read on a
 * timer, so a notification lost while reconnecting only delays them.
 *
 * It also tells the outbox relay (`onNews`) when another replica's append
 * ended an order (a final event to publish), and after each (re)connection,
 * as what was announced while it was away is lost.
 */
export class OrderNotifier {
  private readonly listeners = new Map<string, Set<Listener>>();
  private client: pg.Client | undefined;
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();
  private readonly newsHooks: (() => void)[] = [];

  constructor(
    private readonly databaseUrl: string,
    private readonly logger: Logger,
    /** This replica's writer name (its saga owner): its own appends are announced in-process. */
    private readonly self?: string,
  ) {}

  /** Starts listening in the background; it reconnects until stopped. */
  start(): void {
    this.loop = this.listen();
  }

  /** The next change of `orderId` past `knownVersion`; subscribe before reading, or a change in between is missed. */
  subscribe(orderId: string, knownVersion: number): Subscription {
    let local: Order | undefined;
    let newest = knownVersion;
    let wake: (() => void) | undefined;
    const listener: Listener = (version, order) => {
      if (version <= knownVersion) return;
      newest = Math.max(newest, version);
      if (order && (!local || order.version > local.version)) local = order;
      wake?.();
    };
    let set = this.listeners.get(orderId);
    if (!set) this.listeners.set(orderId, (set = new Set()));
    set.add(listener);
    const listeners = this.listeners;
    return {
      next(ms, signal) {
        return new Promise((resolve) => {
          // The order handed over when it is the newest change; else it must be read.
          const changed = () => (local && local.version >= newest ? local : undefined);
          if (newest > knownVersion || signal?.aborted) return resolve(changed());
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            wake = undefined;
            resolve(changed());
          };
          const timer = setTimeout(done, ms);
          wake = done;
          signal?.addEventListener("abort", done, { once: true });
        });
      },
      cancel() {
        set.delete(listener);
        if (set.size === 0 && listeners.get(orderId) === set) listeners.delete(orderId);
        wake = undefined;
      },
    };
  }

  /** Calls `hook` when another replica ended an order, and whenever notifications may have been missed. */
  onNews(hook: () => void): void {
    this.newsHooks.push(hook);
  }

  /** A local append: local waiters get the order without reading it. */
  notify(order: Order): void {
    this.emit(order.orderId, order.version, order);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client?.end().catch(() => undefined);
    await this.loop;
  }

  private news(): void {
    for (const hook of this.newsHooks) hook();
  }

  private emit(orderId: string, version: number, order: Order | undefined): void {
    const set = this.listeners.get(orderId);
    if (!set) return;
    for (const listener of [...set]) listener(version, order);
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
        if (!message.payload) return;
        const [orderId, version, writer, state] = message.payload.split(" ");
        if (!orderId || (this.self && writer === this.self)) return;
        // No state: an older replica's payload, which may have ended the order.
        if (!state || isFinal(state as OrderState)) this.news();
        // A payload without a version (an older replica's) is news whatever one has seen.
        this.emit(orderId, version ? Number(version) : Number.POSITIVE_INFINITY, undefined);
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
        this.client = client;
        this.news();
        await lost;
      } catch (error) {
        if (!this.stopped) this.logger.warn({ err: error }, "cannot listen for order notifications yet");
      }
      this.client = undefined;
      await client.end().catch(() => undefined);
      if (!this.stopped) await sleep(1_000);
    }
  }
}
