import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { freePort } from "@meshcart/stack/net.js";
import { createLogger, loadConfig, serviceConfig, startServiceRuntime } from "../src/index.js";

const quiet = createLogger({ service: "test", version: "t", level: "silent", destination: new Writable({ write: (_c, _e, done) => done() }) });

describe("port clash", () => {
  it("refuses to start a second service on a gRPC port that is taken, instead of sharing it", async () => {
    const grpcPort = await freePort();
    const config = (adminPort: number) =>
      loadConfig(serviceConfig, { GRPC_PORT: String(grpcPort), ADMIN_PORT: String(adminPort), SHUTDOWN_TIMEOUT_MS: "1000" });
    const first = await startServiceRuntime({ name: "first", config: config(await freePort()), logger: quiet, services: [], host: "127.0.0.1" });
    try {
      await expect(startServiceRuntime({ name: "second", config: config(await freePort()), logger: quiet, services: [], host: "127.0.0.1" })).rejects.toThrow(
        /in use|EADDRINUSE|No address added/i,
      );
    } finally {
      await first.shutdown("test");
    }
  });
});
