import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import { Status } from "nice-grpc";
import { ConfigError, loadConfig } from "../src/config.js";
import { FaultInjector, faultConfig, parseFaultRules, parseFaultsJson, startFaultControl, startFaults, type FaultControl } from "../src/faults.js";
import { createLogger } from "../src/logger.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";

const logger = createLogger({ service: "faults-test", version: "test", level: "silent" });

function injector(random: () => number = Math.random, registry?: Registry): FaultInjector {
  return new FaultInjector({ service: "payment", definitions: [PaymentServiceDefinition], logger, random, registry, instance: "payment-0" });
}

const CHARGE = "/meshcart.payment.v1.PaymentService/Charge";

describe("fault rules", () => {
  it("fill in defaults, and a bare number is a rate", () => {
    expect(parseFaultsJson('{"Charge":0.2,"Refund":{"latencyMs":100,"mode":"after-commit"}}')).toEqual({
      ok: true,
      rules: {
        Charge: { rate: 0.2, code: "UNAVAILABLE", latencyMs: 0, jitterMs: 0, mode: "before" },
        Refund: { rate: 0, code: "UNAVAILABLE", latencyMs: 100, jitterMs: 0, mode: "after-commit" },
      },
    });
  });

  it("report every problem, with where it is", () => {
    const parsed = parseFaultRules({ Charge: { rate: -1, code: "OK", latencyMs: 1.5, typo: 1 }, "bad name": 0.1, Refund: {} });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.problems).toEqual(
      expect.arrayContaining([
        "Charge.rate: must be a number from 0 to 1",
        expect.stringMatching(/^Charge\.code: must be a gRPC status name: CANCELLED, /),
        "Charge.latencyMs: must be an integer from 0 to 60000 (milliseconds)",
        expect.stringContaining('Charge: Unrecognized key: "typo"'),
        expect.stringContaining('bad name: must be a method name as in the .proto (e.g. "Charge") or "*"'),
        "Refund: does nothing: give a rate above 0 and/or latencyMs or jitterMs",
      ]),
    );
    expect(parseFaultsJson("[1]")).toMatchObject({ ok: false, problems: [expect.stringContaining("must be a JSON object of method → rule")] });
  });

  it("come from FAULTS, validated like every variable", () => {
    expect(loadConfig(faultConfig, {})).toEqual({ FAULTS: undefined, FAULT_CONTROL_PORT: undefined });
    expect(loadConfig(faultConfig, { FAULTS: '{"Charge":1}', FAULT_CONTROL_PORT: "9150" })).toEqual({
      FAULTS: { Charge: { rate: 1, code: "UNAVAILABLE", latencyMs: 0, jitterMs: 0, mode: "before" } },
      FAULT_CONTROL_PORT: 9150,
    });
    expect(() => loadConfig(faultConfig, { FAULTS: "{oops" })).toThrow(/FAULTS: is not JSON/);
    expect(() => loadConfig(faultConfig, { FAULTS: '{"Charge":{"mode":"after"}}' })).toThrow(/FAULTS: Charge\.mode: must be "before" or "after-commit"/);
  });
});

describe("FaultInjector", () => {
  it("applies a method's rule, else the * rule, never to health or reflection", () => {
    const faults = injector();
    faults.replace(parseRules({ Charge: 0.5, "*": { latencyMs: 10 } }));
    expect(faults.ruleFor(CHARGE)).toMatchObject({ method: "Charge", rule: { rate: 0.5 } });
    expect(faults.ruleFor("/meshcart.payment.v1.PaymentService/Refund")).toMatchObject({ method: "Refund", rule: { latencyMs: 10 } });
    expect(faults.ruleFor("/grpc.health.v1.Health/Check")).toBeUndefined();
    expect(faults.ruleFor("/meshcart.inventory.v1.InventoryService/ReserveStock")).toBeUndefined();
  });

  it("fires at the rule's rate and adds latency plus jitter", () => {
    let next = 0;
    const faults = injector(() => next);
    const rule = { rate: 0.3, code: "UNAVAILABLE" as const, latencyMs: 100, jitterMs: 50, mode: "before" as const };
    next = 0.29;
    expect(faults.fires(rule)).toBe(true);
    next = 0.3;
    expect(faults.fires(rule)).toBe(false);
    expect(faults.fires({ ...rule, rate: 0 })).toBe(false);
    next = 0.5;
    expect(faults.delayFor(rule)).toBe(125);
    expect(faults.delayFor({ ...rule, jitterMs: 0 })).toBe(100);
  });

  it("refuses rules for methods the service does not have", () => {
    const faults = injector();
    expect(() => faults.replace(parseRules({ ReserveStock: 1 }))).toThrow(ConfigError);
    expect(faults.unknownMethods(parseRules({ ReserveStock: 1, Charge: 1, "*": 1 }))).toEqual([
      'ReserveStock: payment has no such method; it has Charge, GetPayment, ListPayments, Refund (or "*" for all)',
    ]);
  });

  it("counts what it injects, by method, mode and code, and exports the active rates", async () => {
    const registry = new Registry();
    const faults = injector(Math.random, registry);
    faults.replace(parseRules({ Charge: { rate: 1, code: "INTERNAL", mode: "after-commit" } }));
    const error = faults.failure("Charge", faults.ruleFor(CHARGE)!.rule);
    expect(error.code).toBe(Status.INTERNAL);
    expect(error.details).toMatch(/injected fault: payment failed Charge after its work was committed/);
    const text = await registry.metrics();
    expect(text).toContain('meshcart_faults_injected_total{method="Charge",mode="after-commit",code="INTERNAL"} 1');
    expect(text).toContain('meshcart_fault_rate{method="Charge",mode="after-commit",code="INTERNAL"} 1');
    faults.clear();
    expect(await registry.metrics()).not.toContain("meshcart_fault_rate{");
  });

  it("starts from FAULTS, and refuses an unknown method there as a configuration error", async () => {
    const registry = new Registry();
    const config = loadConfig(faultConfig, { FAULTS: '{"Charge":0.25}' });
    const started = await startFaults({ service: "payment", config, definitions: [PaymentServiceDefinition], logger, registry });
    expect(started.control).toBeUndefined();
    expect(started.injector.current()).toMatchObject({ Charge: { rate: 0.25 } });
    const wrong = loadConfig(faultConfig, { FAULTS: '{"Chrage":0.25}' });
    await expect(startFaults({ service: "payment", config: wrong, definitions: [PaymentServiceDefinition], logger, registry: new Registry() })).rejects.toThrow(
      /FAULTS: Chrage: payment has no such method/,
    );
  });
});

describe("the fault-control endpoint", () => {
  let control: FaultControl;
  let faults: FaultInjector;
  const url = (path: string) => `http://127.0.0.1:${control.port}${path}`;

  beforeAll(async () => {
    faults = injector();
    control = await startFaultControl(faults, { port: 0, host: "127.0.0.1", logger });
  });

  afterAll(async () => {
    await control?.close();
  });

  it("answers with this replica's state", async () => {
    const response = await fetch(url("/faults"));
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.json()).toEqual({
      service: "payment",
      instance: "payment-0",
      methods: ["Charge", "GetPayment", "ListPayments", "Refund"],
      faults: {},
    });
  });

  it("replaces, sets, reads and clears rules", async () => {
    expect((await fetch(url("/faults"), { method: "PUT", body: '{"Charge":0.1}' })).status).toBe(200);
    expect((await fetch(url("/faults/Refund"), { method: "PUT", body: '{"rate":1,"code":"ABORTED"}' })).status).toBe(200);
    expect(await (await fetch(url("/faults/Refund"))).json()).toMatchObject({ method: "Refund", rule: { rate: 1, code: "ABORTED" } });
    expect(Object.keys(faults.current())).toEqual(["Charge", "Refund"]);
    expect((await fetch(url("/faults/Charge"), { method: "DELETE" })).status).toBe(200);
    expect(Object.keys(faults.current())).toEqual(["Refund"]);
    expect((await fetch(url("/faults"), { method: "DELETE" })).status).toBe(200);
    expect(faults.current()).toEqual({});
    expect((await fetch(url("/faults/Charge"))).status).toBe(404);
  });

  it("refuses what it does not know", async () => {
    expect((await fetch(url("/metrics"))).status).toBe(404);
    expect((await fetch(url("/faults"), { method: "PATCH", body: "{}" })).status).toBe(405);
    expect((await fetch(url("/faults"), { method: "PUT", body: "x".repeat(70 * 1024) })).status).toBe(413);
    const bad = await fetch(url("/faults/Nope"), { method: "PUT", body: "0.5" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: "invalid fault rules; nothing changed",
      problems: [expect.stringContaining("Nope: payment has no such method")],
    });
  });

  it("stops with the service (its background task)", async () => {
    const own = await startFaultControl(injector(), { port: 0, host: "127.0.0.1", logger });
    const stop = new AbortController();
    const running = own.task.run(stop.signal);
    stop.abort();
    await running;
    await expect(fetch(`http://127.0.0.1:${own.port}/faults`)).rejects.toThrow();
  });
});

function parseRules(value: unknown) {
  const parsed = parseFaultRules(value);
  if (!parsed.ok) throw new Error(parsed.problems.join("; "));
  return parsed.rules;
}
