import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@meshcart/stack/net.js";
import { repoRoot } from "@meshcart/stack/paths.js";
import { runDev } from "../src/runner.js";
import { localServices } from "@meshcart/stack/services.js";
import { readWalkthrough } from "../src/walkthrough.js";
import { tempDir } from "@meshcart/testing/helpers.js";

const run = promisify(execFile);
const toolsBin = path.join(repoRoot, ".tools", "bin");

/**
 * A reader's shell: grpcurl on the PATH, and none of the variables of a
 * `make test` around this run (with them, the walkthrough's own `make -s
 * token` would be a sub-make, printing "Entering directory" into $TOKEN).
 */
function shellEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${toolsBin}:${process.env.PATH ?? ""}` };
  for (const name of ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR"]) delete env[name];
  return env;
}

/**
 * The README's grpcurl walkthrough, run verbatim with bash and the real
 * grpcurl against what `make dev` starts (the same runner, the real
 * services on their documented ports, with a throwaway Postgres).
 */
describe("README walkthrough against make dev", () => {
  const shutdown = new AbortController();
  let done: Promise<number>;
  let output = "";
  let data: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    if (!existsSync(path.join(toolsBin, "grpcurl"))) {
      throw new Error("grpcurl is missing: run `make tools` (make test installs it)");
    }
    for (const service of localServices) {
      if (!existsSync(path.join(repoRoot, service.entry))) throw new Error(`${service.entry} is missing: build first (tsc -b)`);
    }
    data = await tempDir("walkthrough");
    let ready!: () => void;
    const started = new Promise<void>((resolve) => (ready = resolve));
    done = runDev({
      repoRoot,
      services: localServices,
      postgres: { dataDir: path.join(data.path, "pg"), port: await freePort(), persistent: false },
      nats: { dataDir: path.join(data.path, "nats"), port: await freePort(), monitorPort: await freePort() },
      logLevel: "warn",
      exitAfterReady: false,
      shutdown: shutdown.signal,
      write: (text) => {
        output += text;
        if (text.includes("meshcart is running")) ready();
      },
      colorize: false,
    });
    await Promise.race([started, done.then((code) => Promise.reject(new Error(`make dev exited ${code}:\n${output}`)))]);
  });

  afterAll(async () => {
    shutdown.abort();
    const code = await done;
    await data?.remove();
    expect(code, output).toBe(0);
  });

  async function walk(): Promise<string> {
    const script = `set -euo pipefail\n${readWalkthrough(repoRoot)}`;
    try {
      const { stdout, stderr } = await run("bash", ["-c", script], {
        env: shellEnv(),
        // The README's commands run from the repository root (make token).
        cwd: repoRoot,
        maxBuffer: 16 * 1024 * 1024,
        timeout: 90_000,
      });
      return stdout + stderr;
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`the walkthrough failed: ${failed.message}\n${failed.stdout ?? ""}\n${failed.stderr ?? ""}`, { cause: error });
    }
  }

  it("runs verbatim, and the calls do what the README says", async () => {
    const out = await walk();
    // Through the storefront, with a token from `make -s token`.
    expect(out).toContain("meshcart.storefront.v1.StorefrontService");
    expect(out).toMatch(/"sku": "MESH-TSHIRT"/);
    expect(out).toMatch(/"status": "ORDER_STATUS_CONFIRMED"/);
    // The correlation id comes back in the response headers.
    expect(out).toMatch(/Response headers received:[\s\S]*?x-request-id: walkthrough-1/);
    expect(out).toMatch(/order: ord_[0-9a-f]+/);
    expect(out).toContain('"event": "ORDER_CONFIRMED"');
    expect(out).toMatch(/"paymentStatus": \{\}/);
    expect(out).toMatch(/"productsStatus": \{\}/);
    // The shipment, made by fulfillment from the order's event: TrackOrder follows it
    // to SHIPPED, GetOrderDetails composes it, fulfillment's own API shows it, and
    // the cancellation that came after the parcel left is recorded as too late.
    expect(out).toMatch(/"shipmentUpdate": \{[\s\S]*?"event": "SHIPPED"/);
    expect(out).toMatch(/"shipmentStatus": \{\}/);
    expect(out).toContain('"state": "SHIPMENT_STATE_SHIPPED"');
    expect(out).toContain('"type": "SHIPMENT_EVENT_TYPE_CANCEL_TOO_LATE"');
    expect(out).toContain('"cancelledTooLate": true');
    expect(out).toContain('"status": "CAPTURED"');
    expect(out).toMatch(/"status": "ORDER_STATUS_REJECTED"/);
    // Behind the edge, the request_id is the shopper's own, namespaced.
    expect(out).toContain('"requestId": "alice:walkthrough-1"');
    expect(out).toContain("PAYMENT_STATUS_CAPTURED");
    // CreateOrder and WatchOrder on the order service itself: carol's order
    // streamed event by event, up to its confirmation.
    expect(out).toMatch(/"customerId": "carol"[\s\S]*"type": "ORDER_EVENT_TYPE_ORDER_CONFIRMED"/);
    expect(out).toMatch(/"type": "ORDER_EVENT_TYPE_STOCK_RESERVED"[\s\S]*"type": "ORDER_EVENT_TYPE_PAYMENT_CAPTURED"/);
    expect(out).toMatch(/"status": "ORDER_STATUS_CANCELLED"/);
    expect(out).toContain("Code: InvalidArgument");
    expect(out).toContain('"field": "items[0].quantity"');
    expect(out).toContain('"field": "items[1].sku"');
    expect(out).toContain("Code: Unauthenticated");
    expect(out).toMatch(/Code: NotFound\s+Message: order ord_[0-9a-f]+ not found/);
    expect(out).toContain("meshcart.inventory.v1.InventoryService");
    expect(out).toContain('"status": "SERVING"');
  });

  it("runs again on the same data: every step is a replay, not a second effect", async () => {
    const out = await walk();
    expect(out).toMatch(/"status": "ORDER_STATUS_CANCELLED"/);
    expect(out).toMatch(/"status": "ORDER_STATUS_REJECTED"/);
    const payments = /"payments": \[([\s\S]*?)\n {2}\]/.exec(out)?.[1] ?? "";
    expect(payments.match(/"paymentId"/g)).toHaveLength(1);
  });
});
