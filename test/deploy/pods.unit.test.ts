import { describe, expect, it } from "vitest";
import { failing, summary, whyNotReady } from "../../scripts/deploy/pods.mjs";

/**
 * What make deploy prints while helm waits (scripts/deploy/pods.mjs), for
 * the states a pod passes through that the deploy scripts' tests do not
 * show (test/deploy/scripts.test.ts shows image pulls, crash loops, probes
 * and scheduling end to end).
 */
const proxy = { name: "linkerd-proxy", restartPolicy: "Always" };
function pod(status: object, spec: object = { initContainers: [proxy], containers: [{ name: "order" }] }, metadata: object = {}) {
  return { metadata: { name: "order-1", ...metadata }, spec, status: { phase: "Running", conditions: [{ type: "Ready", status: "False" }], ...status } };
}
const running = (name: string, ready: boolean, extra: object = {}) => ({ name, ready, started: true, state: { running: {} }, ...extra });

describe("why a pod is not ready", () => {
  it("names the proxy when the native sidecar itself is not ready", () => {
    const p = pod({ initContainerStatuses: [running("linkerd-proxy", false)], containerStatuses: [running("order", false)] });
    expect(whyNotReady(p, undefined)?.reason).toBe("linkerd-proxy running, readiness probe not passing yet");
  });

  it("tells an init container that runs from a probe that fails", () => {
    const p = pod(
      {
        initContainerStatuses: [running("linkerd-init", false)],
        containerStatuses: [{ name: "order", ready: false, state: { waiting: { reason: "PodInitializing" } } }],
      },
      { initContainers: [{ name: "linkerd-init" }], containers: [{ name: "order" }] },
    );
    expect(whyNotReady(p, undefined)?.reason).toBe("initializing: linkerd-init running");
  });

  it("says a container that has not passed its startup probe yet", () => {
    const p = pod({ containerStatuses: [running("order", false, { started: false })] });
    expect(whyNotReady(p, undefined)?.reason).toBe("order running, startup probe not passing yet");
  });

  it("shows the pull in progress from the pod's latest event", () => {
    const p = pod({ containerStatuses: [{ name: "order", ready: false, state: { waiting: { reason: "ContainerCreating" } } }] });
    const events = {
      items: [
        {
          involvedObject: { kind: "Pod", name: "order-1" },
          type: "Normal",
          reason: "Pulling",
          message: 'Pulling image "meshcart/order:abc"',
          lastTimestamp: "2026-01-01T00:00:00Z",
        },
      ],
    };
    expect(whyNotReady(p, events)?.reason).toBe('starting (ContainerCreating): Pulling image "meshcart/order:abc"');
  });

  it("reports a configuration error with the container whose logs explain it", () => {
    const p = pod({
      containerStatuses: [
        { name: "order", ready: false, state: { waiting: { reason: "CreateContainerConfigError", message: 'secret "postgres" not found' } } },
      ],
    });
    expect(whyNotReady(p, undefined)).toEqual({
      pod: "order-1",
      reason: 'order: CreateContainerConfigError (secret "postgres" not found)',
      container: "order",
      previous: false,
    });
    expect(failing({ items: [p] })).toEqual(["order-1 order current"]);
  });

  it("leaves out pods that are ready, finished or going away", () => {
    const ready = pod({ conditions: [{ type: "Ready", status: "True" }] }, undefined, { name: "ready" });
    const done = pod({ phase: "Succeeded" }, undefined, { name: "job" });
    const leaving = pod({}, undefined, { name: "old", deletionTimestamp: "2026-01-01T00:00:00Z" });
    expect([ready, done, leaving].map((p) => whyNotReady(p, undefined))).toEqual([undefined, undefined, undefined]);
    expect(summary({ items: [ready, done, leaving] }, undefined)).toBe("all 1 pods ready");
    expect(summary({ items: [] }, undefined, "0m10s")).toBe("[0m10s] no pods yet");
    expect(failing({ items: [ready, done, leaving] })).toEqual([]);
  });
});
