import { readFileSync } from "node:fs";
import path from "node:path";
import { Status } from "nice-grpc";
import { parse } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { SHED_STATUS } from "@meshcart/lib";
import { render, valueSets, type K8sObject, type Manifest } from "./support/chart.js";
import { repoRoot } from "./support/paths.js";

/*
 * The mesh never retries shed load. The services shed with SHED_STATUS
 * (services/lib: admission control and an exhausted database pool answer
 * it, and the storefront passes it through); a retry of it would send the
 * refused call straight back into the overload it was refused for. Read
 * from what the chart renders (every route's Linkerd retry annotations and
 * any Gateway API retry field, under every value set) and from the mesh
 * contract itself, whatever its layout: no copy of either here.
 */

/** The code as retry.linkerd.io/grpc names it: RESOURCE_EXHAUSTED → resource-exhausted. */
const shedCode = Status[SHED_STATUS]!.toLowerCase().replaceAll("_", "-");
/** HTTP's own "too many requests", in case a route ever retries by HTTP status. */
const HTTP_SHED = 429;

const ROUTE_KINDS = ["GRPCRoute", "HTTPRoute"];

/** Whether a retry.linkerd.io/http value ("5xx", "429", "400-499", "gateway-error") covers HTTP 429. */
function coversHttpShed(conditions: string): boolean {
  return conditions.split(",").some((raw) => {
    const condition = raw.trim().toLowerCase();
    if (condition === String(HTTP_SHED) || condition === "4xx") return true;
    const range = /^(\d{3})-(\d{3})$/.exec(condition);
    return range !== null && Number(range[1]) <= HTTP_SHED && HTTP_SHED <= Number(range[2]);
  });
}

/** Every `retry` value anywhere in a parsed YAML document, with where it is. */
function retryLists(node: unknown, at = ""): { at: string; value: unknown }[] {
  if (Array.isArray(node)) return node.flatMap((item, i) => retryLists(item, `${at}[${i}]`));
  if (node === null || typeof node !== "object") return [];
  return Object.entries(node).flatMap(([key, value]) => [
    ...(/^retr(y|ies)$/i.test(key) ? [{ at: `${at}.${key}`, value }] : []),
    ...retryLists(value, `${at}.${key}`),
  ]);
}

describe("no route of the mesh retries shed load", () => {
  it("the services shed with RESOURCE_EXHAUSTED", () => {
    expect(shedCode).toBe("resource-exhausted");
  });

  it("the mesh contract lists it in no retry list", () => {
    const contract = parse(readFileSync(path.join(repoRoot, "proto", "mesh.yaml"), "utf8")) as unknown;
    const lists = retryLists(contract);
    expect(lists.length, "the contract has retry lists to check").toBeGreaterThan(0);
    for (const { at, value } of lists) {
      expect(JSON.stringify(value).toLowerCase(), `proto/mesh.yaml${at}`).not.toContain(shedCode);
    }
  });

  describe.each(valueSets)("the chart with $name values", ({ file }) => {
    let routes: K8sObject[];
    beforeAll(async () => {
      routes = (await render(file ? ["-f", file] : [])).filter((o) => ROUTE_KINDS.includes(o.kind));
    });

    it("retries neither the shed gRPC status nor HTTP 429 on any route", () => {
      const retried = routes.filter((r) => Object.keys(r.metadata.annotations ?? {}).some((k) => k.startsWith("retry.linkerd.io/")));
      expect(retried.length, "some routes do retry (transient faults)").toBeGreaterThan(0);
      for (const route of routes) {
        const where = `${route.kind}/${route.metadata.name}`;
        const annotations = route.metadata.annotations ?? {};
        const grpc = (annotations["retry.linkerd.io/grpc"] ?? "").split(",").map((c) => c.trim().toLowerCase());
        expect(grpc, `${where}: retry.linkerd.io/grpc`).not.toContain(shedCode);
        expect(coversHttpShed(annotations["retry.linkerd.io/http"] ?? ""), `${where}: retry.linkerd.io/http retries ${HTTP_SHED}`).toBe(false);
        // The Gateway API's own retry field (HTTPRoute rules), should a route ever use it.
        for (const [i, rule] of ((route.spec?.rules ?? []) as Manifest[]).entries()) {
          const codes: unknown[] = rule.retry?.codes ?? [];
          expect(codes.map(String), `${where} rules[${i}].retry.codes`).not.toContain(String(HTTP_SHED));
        }
      }
    });
  });

  it("would catch a route that retried it", () => {
    expect(coversHttpShed("5xx")).toBe(false);
    expect(coversHttpShed("gateway-error,429")).toBe(true);
    expect(coversHttpShed("400-499")).toBe(true);
    expect(retryLists({ services: { a: { rpcs: { X: { retry: ["unavailable", shedCode] } } } } })[0]!.value).toContain(shedCode);
  });
});
