import { createServer, type Server, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";

export interface AdminProbes {
  /** The process is alive and its event loop turns. */
  live(): boolean;
  /** The service can take traffic: started, database reachable, not shutting down. */
  ready(): boolean;
}

/**
 * The admin port: Kubernetes probes it with httpGet (gRPC probes fail under
 * Linkerd's deny policies) and Prometheus scrapes it. It is a separate port
 * so the mesh can authorize it apart from the API.
 */
export function createAdminServer(probes: AdminProbes, registry: Registry): Server {
  return createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    switch (path) {
      case "/healthz":
        answer(response, probes.live());
        return;
      case "/readyz":
        answer(response, probes.ready());
        return;
      case "/metrics":
        registry.metrics().then(
          (body) => response.writeHead(200, { "content-type": registry.contentType }).end(body),
          (error: unknown) => response.writeHead(500, { "content-type": "text/plain" }).end(String(error)),
        );
        return;
      default:
        response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
}

function answer(response: ServerResponse, ok: boolean): void {
  response.writeHead(ok ? 200 : 503, { "content-type": "text/plain", "cache-control": "no-store" });
  response.end(ok ? "ok\n" : "not ready\n");
}
