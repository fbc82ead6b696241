import { parseArgs } from "node:util";
import { faultControlPort, localServices } from "@meshcart/stack/services.js";

/*
 * `make faults`: shows, sets or clears the injected faults of make dev's
 * payment and inventory through their fault-control endpoints
 * (services/lib/src/faults.ts). Locally each runs one replica, so this sets
 * "all of them"; in a cluster, call every pod (docs/load-and-faults.md, "Faults").
 *
 *   make faults                                   show every service's rules
 *   make faults SERVICE=payment SPEC='{"Charge":{"rate":0.5}}'   replace payment's rules
 *   make faults SERVICE=payment SPEC=off          clear them (SERVICE=all: every service)
 *
 * FAULT_CONTROL_URL (e.g. a port-forward, http://localhost:9150) replaces
 * make dev's port of the one SERVICE named.
 */

const usage = 'usage: make faults [SERVICE=payment|inventory|all] [SPEC=\'{"Charge":{"rate":0.5,"code":"UNAVAILABLE"}}\' | SPEC=off]';

interface State {
  service: string;
  instance: string;
  methods: string[];
  faults: Record<string, { rate: number; code: string; latencyMs: number; jitterMs: number; mode: string }>;
}

const takers = localServices.filter((s) => faultControlPort(s) !== undefined);

function describe(state: State): string {
  const rules = Object.entries(state.faults);
  if (rules.length === 0) return `${state.service} (${state.instance}): no faults`;
  const lines = rules.map(([method, rule]) => {
    const parts: string[] = [];
    if (rule.rate > 0) parts.push(`${Math.round(rule.rate * 1000) / 10}% ${rule.code}, mode ${rule.mode}`);
    if (rule.latencyMs > 0 || rule.jitterMs > 0) parts.push(`+${rule.latencyMs} ms${rule.jitterMs > 0 ? ` (+ up to ${rule.jitterMs} ms jitter)` : ""}`);
    return `  ${method}: ${parts.join("; ")}`;
  });
  return `${state.service} (${state.instance}):\n${lines.join("\n")}`;
}

async function call(name: string, base: string, method: "GET" | "PUT" | "DELETE", body?: string): Promise<boolean> {
  let response: Response;
  try {
    response = await fetch(`${base}/faults`, { method, body, headers: body ? { "content-type": "application/json" } : {} });
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
    process.stderr.write(`make faults: ${name}'s fault control at ${base} does not answer (${cause}); is make dev running?\n`);
    return false;
  }
  const answer = (await response.json().catch(() => ({}))) as Partial<State> & { error?: string; problems?: string[] };
  if (!response.ok) {
    process.stderr.write(`make faults: ${name} refused (${response.status}): ${answer.error ?? ""}\n`);
    for (const problem of answer.problems ?? []) process.stderr.write(`  - ${problem}\n`);
    return false;
  }
  process.stdout.write(`${describe(answer as State)}\n`);
  return true;
}

try {
  const { values } = parseArgs({ options: { service: { type: "string" }, spec: { type: "string" } } });
  const service = values.service?.trim() || "all";
  const spec = values.spec?.trim() ?? "";
  const chosen = service === "all" ? takers : takers.filter((s) => s.name === service);
  if (chosen.length === 0) throw new Error(`SERVICE must be one of ${takers.map((s) => s.name).join(", ")} or all, not "${service}"\n${usage}`);
  const override = process.env.FAULT_CONTROL_URL?.replace(/\/+$/, "");
  if (override && chosen.length !== 1) throw new Error("FAULT_CONTROL_URL needs one SERVICE");
  if (spec && spec !== "off" && service === "all") throw new Error(`a SPEC names one service's methods: give SERVICE=payment or SERVICE=inventory\n${usage}`);
  let ok = true;
  for (const row of chosen) {
    const base = override ?? `http://localhost:${faultControlPort(row)}`;
    if (!spec) ok = (await call(row.name, base, "GET")) && ok;
    else if (spec === "off") ok = (await call(row.name, base, "DELETE")) && ok;
    else ok = (await call(row.name, base, "PUT", spec)) && ok;
  }
  process.exitCode = ok ? 0 : 1;
} catch (error) {
  process.stderr.write(`make faults: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 2;
}
