import { parseExposition } from "../testing/prometheus.js";

/**
 * meshcart RPCs a set of services has answered so far, from their own
 * /metrics (grpc_server_handled_total): the difference across a load run,
 * divided by the calls ghz made, is how many RPCs one call really caused.
 * Health checks and reflection are not meshcart RPCs and are left out.
 */
export async function handledRpcs(adminPorts: readonly number[]): Promise<number> {
  const counts = await Promise.all(
    adminPorts.map(async (port) => {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      if (!response.ok) throw new Error(`GET :${port}/metrics answered ${response.status}`);
      return countMeshcartRpcs(await response.text());
    }),
  );
  return counts.reduce((sum, n) => sum + n, 0);
}

export function countMeshcartRpcs(exposition: string): number {
  return parseExposition(exposition)
    .samples("grpc_server_handled_total")
    .filter((s) => s.labels.grpc_service?.startsWith("meshcart."))
    .reduce((sum, s) => sum + s.value, 0);
}
