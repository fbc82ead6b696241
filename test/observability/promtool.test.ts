import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@meshcart/stack/net.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";
import { SHOP_TOKENS, Shop, type ShopService } from "@meshcart/testing/shop.js";
import { repoRoot, toolsBin } from "../deploy/support/paths.js";
import { sleep } from "@meshcart/lib";

/*
 * Every service's /metrics passes Prometheus's own lint, `promtool check
 * metrics` (the pinned promtool of scripts/tools.sh), on a live scrape
 * after real calls: the five services of a shop and the load generator
 * shopping there. The lint is Prometheus's naming conventions (a counter
 * ends in _total and nothing else does, base units, help texts), which
 * dashboards and recording rules rely on.
 */

const promtool = path.join(toolsBin, "promtool");
const SERVICES: ShopService[] = ["inventory", "payment", "order", "fulfillment", "storefront"];

let shop: Shop;
let loadgen: ServiceProcess | undefined;
let loadgenAdmin = "";

beforeAll(async () => {
  if (!existsSync(promtool)) throw new Error("promtool is missing: run `scripts/tools.sh promtool` (make test installs it)");
  shop = await Shop.start({ prefix: "promtool" });
  const adminPort = await freePort();
  loadgenAdmin = `http://127.0.0.1:${adminPort}`;
  loadgen = await startService({
    name: "loadgen",
    entry: path.join(repoRoot, "services/loadgen/dist/main.js"),
    adminPort,
    readyTimeoutMs: 30_000,
    env: {
      GRPC_PORT: String(await freePort()),
      ADMIN_PORT: String(adminPort),
      LOG_LEVEL: "warn",
      LOADGEN_RPS: "20",
      STOREFRONT_ADDRESS: shop.address("storefront"),
      INVENTORY_ADDRESS: shop.address("inventory"),
      STOREFRONT_JWT_SECRET: SHOP_TOKENS.secret,
      STOREFRONT_JWT_ISSUER: SHOP_TOKENS.issuer,
      STOREFRONT_JWT_AUDIENCE: SHOP_TOKENS.audience,
    },
  });
  // A few seconds of shopping: orders, refusals, reads, so that every
  // labelled family has series.
  await sleep(4_000);
}, 180_000);

afterAll(async () => {
  await loadgen?.stop("SIGTERM", 10_000).catch(() => undefined);
  await shop?.stop();
});

function lint(exposition: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(promtool, ["check", "metrics"], (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
    child.stdin!.end(exposition);
  });
}

describe("promtool check metrics", () => {
  it("passes on every service's live /metrics, the load generator's included", async () => {
    const targets: [string, string][] = [...SERVICES.map((s): [string, string] => [s, shop.adminUrl(s)]), ["loadgen", loadgenAdmin]];
    for (const [name, base] of targets) {
      const response = await fetch(`${base}/metrics`);
      expect(response.status, name).toBe(200);
      const text = await response.text();
      expect(text, name).toContain("grpc_");
      const { code, out } = await lint(text);
      expect(out, `${name}: promtool check metrics`).toBe("");
      expect(code, name).toBe(0);
    }
  });

  it("would refuse prom-client's *_total gauges, which the services drop", async () => {
    const bad = "# HELP nodejs_active_handles_total Total number of active handles.\n# TYPE nodejs_active_handles_total gauge\nnodejs_active_handles_total 3\n";
    const { code, out } = await lint(bad);
    expect(code).not.toBe(0);
    expect(out).toContain("nodejs_active_handles_total");
    const scraped = await (await fetch(`${shop.adminUrl("order")}/metrics`)).text();
    expect(scraped).not.toMatch(/^nodejs_active_\w+_total/m);
    expect(scraped).toMatch(/^nodejs_active_handles\{/m);
  });
});
