import { parseExposition } from "@meshcart/testing/prometheus.js";
import { sleep } from "@meshcart/lib";

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

/**
 * Waits until no saga runs in the stack's order service: a load tool that
 * ends a run abandons the calls still in flight, but their sagas go on
 * (a caller that gives up never cancels one), and would otherwise weigh on
 * the next measurement. Bounded: gives up after `timeoutMs`.
 */
export async function sagasSettled(adminPorts: readonly number[], timeoutMs = 60_000): Promise<number> {
  const began = Date.now();
  for (;;) {
    let running = 0;
    for (const port of adminPorts) {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      if (response.ok) running += parseExposition(await response.text()).sum("meshcart_order_sagas_running");
    }
    if (running === 0 || Date.now() - began > timeoutMs) return Date.now() - began;
    await sleep(100);
  }
}
