import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { markers } from "../../scripts/deploy/panels.mjs";
import { blocks, walkthroughs } from "../../scripts/deploy/walkthroughs.mjs";
import { repoRoot } from "./support/paths.js";

/*
 * make e2e checks, after each mesh walkthrough, that the Grafana panel the
 * walkthrough names has data in viz's Prometheus (scripts/deploy/panels.mjs).
 * No cluster here: the markers are checked against the dashboard and the
 * docs, and the script runs against a stand-in Prometheus that records
 * every query it is asked and answers as told.
 */

const read = (rel: string) => readFileSync(path.join(repoRoot, rel), "utf8");
const MESH_WALKTHROUGHS = ["mtls", "authorization", "retries", "circuit-breaking", "canary", "rate-limiting"];

interface Panel {
  title: string;
  targets?: { expr: string }[];
}
const dashboard = JSON.parse(read("dashboards/meshcart-mesh.json")) as { uid: string; panels: Panel[] };

describe("the walkthroughs' Grafana panels", () => {
  it("each mesh walkthrough names, in its text and in a marker, panels of the meshcart mesh dashboard", () => {
    for (const name of MESH_WALKTHROUGHS) {
      const file = `docs/walkthroughs/${name}.md`;
      const text = read(file);
      const found = markers(text) as { title: string; filters: { label: string }[] }[];
      expect(found.length, file).toBeGreaterThan(0);
      for (const { title, filters } of found) {
        const panel = dashboard.panels.find((p) => p.title === title);
        expect(panel, `${file}: no panel "${title}" in dashboards/meshcart-mesh.json`).toBeDefined();
        expect(text.replace(/\s+/g, " "), `${file} must name the panel in its text`).toContain(`**${title}**`);
        expect(text, file).toContain("meshcart mesh");
        // A filter can only match a label the panel's result keeps: one it groups by.
        for (const { label } of filters) {
          const grouped = panel!.targets!.some((t) => new RegExp(`by \\(([^)]*\\b${label}\\b[^)]*)\\)`).test(t.expr));
          expect(grouped, `${file}: "${title}" does not keep the label ${label}`).toBe(true);
        }
      }
    }
  });

  it("are checked by make e2e after exactly the walkthroughs that name one", () => {
    const e2e = read("scripts/deploy/e2e.sh");
    const checked = [...e2e.matchAll(/^panels ([a-z-]+)$/gm)].map((m) => m[1]);
    const named = (walkthroughs as string[]).map((f) => path.basename(f, ".md")).filter((n) => markers(read(`docs/walkthroughs/${n}.md`)).length > 0);
    expect(checked).toEqual(named);
    expect(named).toEqual(MESH_WALKTHROUGHS);
    // Each check follows its walkthrough's run, not another's.
    for (const name of checked) {
      const run = e2e.indexOf(`\nwalkthrough ${name}\n`);
      const check = e2e.indexOf(`\npanels ${name}\n`);
      const next = (walkthroughs as string[])
        .map((f) => e2e.indexOf(`\nwalkthrough ${path.basename(f, ".md")}\n`))
        .filter((i) => i > run)
        .sort((a, b) => a - b)[0];
      expect(run, name).toBeGreaterThan(0);
      expect(check, name).toBeGreaterThan(run);
      if (next !== undefined) expect(check, name).toBeLessThan(next);
    }
  });
});

describe("scripts/deploy/panels.mjs against a stand-in Prometheus", () => {
  let server: http.Server;
  let url: string;
  const asked: string[] = [];
  let answer: (query: string) => { metric: Record<string, string>; value: [number, string] }[] = () => [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const u = new URL(req.url ?? "/", "http://stand-in");
      if (u.pathname !== "/api/v1/query") {
        res.writeHead(404).end();
        return;
      }
      const query = u.searchParams.get("query") ?? "";
      asked.push(query);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "success", data: { resultType: "vector", result: answer(query) } }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  function run(walkthrough: string, env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
    return new Promise((resolve) =>
      execFile(
        process.execPath,
        [path.join(repoRoot, "scripts/deploy/panels.mjs"), `docs/walkthroughs/${walkthrough}.md`],
        { cwd: repoRoot, env: { PATH: process.env.PATH ?? "", PROMETHEUS_URL: url, PANEL_WAIT: "0", ...env } },
        (error, _stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
  }

  /** A panel's queries as Grafana would send them for the namespace meshcart and a 5-minute interval. */
  const sent = (title: string) =>
    dashboard.panels.find((p) => p.title === title)!.targets!.map((t) => t.expr.replaceAll("$namespace", "meshcart").replaceAll("$__rate_interval", "5m"));

  it("asks for the panel's own queries, read from the dashboard, and passes on a matching series above zero", async () => {
    answer = () => [{ metric: { parent_name: "payment", route_name: "payment-charge" }, value: [0, "1.5"] }];
    asked.length = 0;
    const result = await run("retries");
    expect(result.code, result.stderr).toBe(0);
    expect(asked).toEqual(sent("Retries/s per route").slice(0, 1));
    expect(result.stderr).toContain('panel "Retries/s per route" (route_name=payment-charge): 1 series with data');
  });

  it("fails, showing what the queries returned, when no series matches the marker's labels", async () => {
    answer = () => [{ metric: { parent_name: "order", route_name: "order-get-order" }, value: [0, "3"] }];
    const result = await run("retries");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no data");
    expect(result.stderr).toContain('route_name="order-get-order"');
  });

  it("fails on series that are all zero or not a number, and on an empty answer", async () => {
    answer = () => [
      { metric: { route_name: "payment-charge" }, value: [0, "0"] },
      { metric: { route_name: "payment-charge" }, value: [0, "NaN"] },
    ];
    expect((await run("retries")).code).toBe(1);
    answer = () => [];
    const empty = await run("rate-limiting");
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain("returned nothing");
  });

  it("tries every query of a panel and the namespace it is given", async () => {
    answer = (query) => (query.includes('namespace="shop"') ? [{ metric: { srv_name: "payment-grpc" }, value: [0, "1"] }] : []);
    asked.length = 0;
    const result = await run("mtls", { MESHCART_NAMESPACE: "shop" });
    expect(result.code, result.stderr).toBe(0);
    expect(asked.every((q) => q.includes('namespace="shop"') && !q.includes("$"))).toBe(true);
  });

  it("refuses to run without a Prometheus to ask", async () => {
    const result = await run("mtls", { PROMETHEUS_URL: "" });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("PROMETHEUS_URL");
  });
});

describe("every walkthrough", () => {
  const all = [...(walkthroughs as string[])];

  it("names the cluster in every kubectl, linkerd and helm command, and runs grpcurl from the mesh or from .tools/bin", () => {
    const problems: string[] = [];
    for (const file of all) {
      const text = read(file);
      const code = (blocks(text) as { code: string }[]).map((b) => b.code.replace(/\\\n\s*/g, " "));
      // Inline commands of the prose that are meant to be run (they name a namespace).
      const inline = [...text.matchAll(/`((?:kubectl|linkerd|helm) [^`]*)`/g)].map((m) => m[1]!).filter((c) => /\s(-n|--namespace)\s/.test(c));
      for (const command of [...code.flatMap((c) => c.split("\n")), ...inline]) {
        if (command.trim().startsWith("#")) continue;
        for (const m of command.matchAll(/(?:^|[\s;|&(]|\$\()(kubectl|linkerd|helm)\s+(.*)/g)) {
          const flag = m[1] === "helm" ? "--kube-context kind-meshcart" : "--context kind-meshcart";
          if (!m[2]!.includes(flag)) problems.push(`${file}: ${m[1]} without ${flag}: ${command.trim()}`);
        }
        if (command.trim().startsWith("#")) continue;
        for (const m of command.matchAll(/(\S*)grpcurl -(?!-)/g)) {
          const inMesh = /-- $/.test(command.slice(0, m.index));
          if (!inMesh && !m[1]!.endsWith(".tools/bin/")) problems.push(`${file}: a grpcurl that is neither in a pod nor .tools/bin/grpcurl: ${command.trim()}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});
