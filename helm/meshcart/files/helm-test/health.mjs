// helm test: every meshcart service answers its gRPC health check with
// SERVING, called from a meshed pod as the services call each other.
//
//   node helm-test/health.mjs <host:port>...
//
// Runs in the storefront image (mounted at /app/helm-test), whose
// node_modules has nice-grpc and the health client.
/* global AbortSignal */
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";

const SERVING = 1; // grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING
const addresses = process.argv.slice(2);
if (addresses.length === 0) {
  console.error("usage: node health.mjs <host:port>...");
  process.exit(2);
}

let failed = 0;
for (const address of addresses) {
  const channel = createChannel(address);
  try {
    const health = createClient(HealthDefinition, channel);
    const { status } = await health.check({ service: "" }, { signal: AbortSignal.timeout(5_000) });
    if (status === SERVING) {
      console.log(`ok   ${address} SERVING`);
    } else {
      failed++;
      console.log(`FAIL ${address} status ${status}`);
    }
  } catch (error) {
    failed++;
    console.log(`FAIL ${address} ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    channel.close();
  }
}
console.log(failed === 0 ? `${addresses.length} passed, 0 failed` : `${addresses.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
