import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { repoRoot } from "@meshcart/stack/paths.js";
import { sleep } from "@meshcart/lib";

/**
 * grpc.health.v1 as Kubernetes and the mesh ask it: the overall status of a
 * server (service ""). UNREACHABLE when nothing answers at all (a killed
 * process), which the protocol has no status for.
 */
export type HealthStatus = "SERVING" | "NOT_SERVING" | "UNKNOWN" | "SERVICE_UNKNOWN" | "UNREACHABLE";

interface HealthClient extends grpc.Client {
  Check(
    request: { service: string },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, response?: { status: string }) => void,
  ): grpc.ClientUnaryCall;
}

type HealthConstructor = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => HealthClient;

let constructor: HealthConstructor | undefined;

function healthConstructor(): HealthConstructor {
  if (constructor) return constructor;
  const definition = protoLoader.loadSync("grpc/health/v1/health.proto", {
    includeDirs: [path.join(repoRoot, "proto")],
    enums: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: HealthConstructor } } } };
  constructor = loaded.grpc.health.v1.Health;
  return constructor;
}

export class HealthChecker {
  private readonly client: HealthClient;

  constructor(readonly address: string) {
    const Health = healthConstructor();
    this.client = new Health(address, grpc.credentials.createInsecure(), {
      // A probe must see the server as it is now, not wait out a reconnect backoff.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 500,
    });
  }

  check(timeoutMs = 1_000): Promise<HealthStatus> {
    return new Promise((resolve) => {
      this.client.Check({ service: "" }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error) resolve("UNREACHABLE");
        else resolve((response?.status ?? "UNKNOWN") as HealthStatus);
      });
    });
  }

  /** Polls until the status is `want`; the milliseconds it took, or undefined after `timeoutMs`. */
  async waitFor(want: HealthStatus, timeoutMs: number, intervalMs = 50): Promise<number | undefined> {
    const begun = performance.now();
    for (;;) {
      if ((await this.check(Math.min(1_000, timeoutMs))) === want) return performance.now() - begun;
      if (performance.now() - begun > timeoutMs) return undefined;
      await sleep(intervalMs);
    }
  }

  close(): void {
    this.client.close();
  }
}
