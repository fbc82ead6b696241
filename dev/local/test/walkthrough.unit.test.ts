import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatBanner } from "../src/banner.js";
import { repoRoot } from "@meshcart/stack/paths.js";
import { DEMO_TOKENS } from "@meshcart/lib";
import { devNatsPorts, devPostgresPort, localPorts, localServices, serviceEnv } from "@meshcart/stack/services.js";
import { extractWalkthrough, readWalkthrough } from "../src/walkthrough.js";

describe("walkthrough", () => {
  it("is the README's sh block between the walkthrough markers", () => {
    const readme = [
      "intro",
      "<!-- walkthrough:begin -->",
      "```sh",
      "grpcurl a",
      "grpcurl b",
      "```",
      "<!-- walkthrough:end -->",
      "```sh",
      "not this",
      "```",
    ].join("\n");
    expect(extractWalkthrough(readme)).toBe("grpcurl a\ngrpcurl b\n");
    expect(() => extractWalkthrough("no markers")).toThrow(/markers/);
  });

  it("calls every local service of the README's port table", () => {
    const walkthrough = readWalkthrough(repoRoot);
    for (const service of localServices) expect(walkthrough).toContain(`localhost:${service.grpcPort}`);
    const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
    for (const service of localServices) {
      const database = service.database ? `\`${service.database}\`` : "none";
      expect(readme).toContain(`| ${service.name} | \`localhost:${service.grpcPort}\` | \`localhost:${service.adminPort}\` | ${database} |`);
    }
  });

  it("is printed in the banner with every service, the database and the broker", () => {
    const banner = formatBanner({
      services: localServices,
      postgres: { where: "127.0.0.1:5433  data in .data/postgres", url: (db) => `postgres://postgres:postgres@127.0.0.1:5433/${db}` },
      nats: { where: "127.0.0.1:4223  monitoring http://localhost:8223/jsz  data in .data/nats" },
      walkthrough: readWalkthrough(repoRoot),
    });
    for (const line of readWalkthrough(repoRoot).split("\n").filter(Boolean)) expect(banner).toContain(`  ${line}\n`);
    expect(banner).toContain("postgres     127.0.0.1:5433  data in .data/postgres");
    expect(banner).toContain("nats         127.0.0.1:4223  monitoring http://localhost:8223/jsz  data in .data/nats");
    expect(banner).toContain(
      "inventory    gRPC localhost:50053  admin http://localhost:9053/readyz  database postgres://postgres:postgres@127.0.0.1:5433/meshcart_inventory",
    );
    expect(banner).toContain(
      "fulfillment  gRPC localhost:50054  admin http://localhost:9054/readyz  database postgres://postgres:postgres@127.0.0.1:5433/meshcart_fulfillment",
    );
    expect(banner).toContain("storefront   gRPC localhost:50050  admin http://localhost:9050/readyz  no database");
  });
});

describe("local services table", () => {
  it("starts each service after those it calls, on distinct ports, each with its own database", () => {
    expect(localServices.map((s) => s.name)).toEqual(["inventory", "payment", "order", "fulfillment", "storefront"]);
    const ports = Object.values(localPorts).flatMap((service) => [service.grpc, service.admin]);
    expect(new Set(ports).size).toBe(ports.length);
    expect(ports).not.toContain(devPostgresPort);
    for (const port of Object.values(devNatsPorts)) expect(ports).not.toContain(port);
    const databases = localServices.flatMap((s) => (s.database ? [s.database] : []));
    expect(databases).toHaveLength(4);
    expect(new Set(databases).size).toBe(databases.length);
    for (const service of localServices) {
      expect(Object.values(localPorts)).toContainEqual({ grpc: service.grpcPort, admin: service.adminPort });
    }
  });

  it("points order at inventory and payment and gives each the kit's environment contract", () => {
    const order = localServices.find((s) => s.name === "order")!;
    const env = serviceEnv(order, { databaseUrl: "postgres://db/x", natsUrl: "nats://127.0.0.1:4223", logLevel: "debug" });
    expect(env).toMatchObject({
      GRPC_PORT: "50051",
      ADMIN_PORT: "9051",
      DATABASE_URL: "postgres://db/x",
      LOG_LEVEL: "debug",
      SERVICE_VERSION: "dev",
      DEPLOYMENT_ENVIRONMENT: "local",
      INVENTORY_ADDRESS: `localhost:${localPorts.inventory.grpc}`,
      PAYMENT_ADDRESS: `localhost:${localPorts.payment.grpc}`,
      NATS_URL: "nats://127.0.0.1:4223",
    });
    expect(serviceEnv(localServices[0]!, { databaseUrl: "u", logLevel: "info" }).INVENTORY_SEED_CATALOGUE).toBe("true");
  });

  it("gives the broker's URL to order and fulfillment only", () => {
    const talking = localServices.filter((s) => serviceEnv(s, { natsUrl: "nats://b", logLevel: "info" }).NATS_URL === "nats://b").map((s) => s.name);
    expect(talking).toEqual(["order", "fulfillment"]);
  });

  it("points storefront at order, inventory, payment and fulfillment with the demo token key, and gives it no database", () => {
    const storefront = localServices.find((s) => s.name === "storefront")!;
    const env = serviceEnv(storefront, { logLevel: "info" });
    expect(env).toMatchObject({
      GRPC_PORT: "50050",
      ADMIN_PORT: "9050",
      ORDER_ADDRESS: `localhost:${localPorts.order.grpc}`,
      INVENTORY_ADDRESS: `localhost:${localPorts.inventory.grpc}`,
      PAYMENT_ADDRESS: `localhost:${localPorts.payment.grpc}`,
      FULFILLMENT_ADDRESS: `localhost:${localPorts.fulfillment.grpc}`,
      STOREFRONT_JWT_SECRET: DEMO_TOKENS.secret,
    });
    expect(env).not.toHaveProperty("DATABASE_URL");
    expect(storefront.database).toBeUndefined();
  });
});
