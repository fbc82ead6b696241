#!/usr/bin/env node
// Why pods are not ready, from `kubectl get pods -o json` and `kubectl get
// events -o json`: what `make deploy` prints while `helm upgrade --wait`
// runs, and what it shows when that fails (scripts/deploy/rollout.sh).
// Node built-ins only.
//
//   node scripts/deploy/pods.mjs summary <pods.json> <events.json> [elapsed]
//   node scripts/deploy/pods.mjs failing <pods.json>
//       "<pod> <container> <previous|current>" per pod that is not ready
//   node scripts/deploy/pods.mjs events <events.json> <pod>
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Waiting reasons that mean the image cannot be had. */
const IMAGE_REASONS = new Set(["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "ImageInspectError"]);
/** Waiting reasons of a container that is on its way. */
const STARTING_REASONS = new Set(["ContainerCreating", "PodInitializing"]);

const condition = (pod, type) => (pod.status?.conditions ?? []).find((c) => c.type === type);
const isReady = (pod) => condition(pod, "Ready")?.status === "True";
const when = (event) => Date.parse(event.lastTimestamp ?? event.eventTime ?? event.metadata?.creationTimestamp ?? "") || 0;

/** The pod's events, oldest first. */
export function eventsOf(eventList, podName) {
  return (eventList?.items ?? []).filter((e) => e.involvedObject?.kind === "Pod" && e.involvedObject?.name === podName).sort((a, b) => when(a) - when(b));
}

/** Every container status of a pod, init containers (and the native-sidecar proxy) first. */
function statuses(pod) {
  return [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
}

/**
 * Why one pod is not ready: `reason` for a person, `container` whose logs
 * tell more, `previous` when that container's last run is what crashed.
 * Undefined for a pod that is ready, has completed or is going away.
 */
export function whyNotReady(pod, eventList) {
  if (pod.metadata?.deletionTimestamp || pod.status?.phase === "Succeeded" || isReady(pod)) return undefined;
  const latest = eventsOf(eventList, pod.metadata.name).at(-1);
  const warning = latest?.type === "Warning" ? latest.message : undefined;
  const found = problem(pod, latest);
  const reason = warning && !found.reason.includes(warning) ? `${found.reason}: ${warning}` : found.reason;
  return { pod: pod.metadata.name, ...found, reason: oneLine(reason) };
}

function problem(pod, latest) {
  const firstContainer = pod.spec?.containers?.[0]?.name;
  if (pod.status?.phase === "Failed")
    return { reason: `failed: ${pod.status.reason ?? ""} ${pod.status.message ?? ""}`.trim(), container: firstContainer, previous: false };
  const scheduled = condition(pod, "PodScheduled");
  if (scheduled?.status === "False")
    return { reason: `not scheduled: ${scheduled.message ?? scheduled.reason ?? "no node fits"}`, container: undefined, previous: false };
  for (const s of statuses(pod)) {
    const waiting = s.state?.waiting;
    if (waiting && IMAGE_REASONS.has(waiting.reason)) {
      return { reason: `image ${s.image}: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ""}`, container: undefined, previous: false };
    }
    if (waiting?.reason === "CrashLoopBackOff") {
      const last = s.lastState?.terminated;
      const exit = last ? `exited ${last.exitCode}${last.reason ? ` (${last.reason})` : ""}` : "keeps exiting";
      return { reason: `crash loop: ${s.name} ${exit}, ${s.restartCount ?? 0} restarts`, container: s.name, previous: true };
    }
    if (waiting && !STARTING_REASONS.has(waiting.reason)) {
      return { reason: `${s.name}: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ""}`, container: s.name, previous: false };
    }
    const done = s.state?.terminated;
    if (done && done.exitCode !== 0)
      return { reason: `${s.name} exited ${done.exitCode}${done.reason ? ` (${done.reason})` : ""}`, container: s.name, previous: false };
  }
  // A running container that is not ready: an app container or a native
  // sidecar (Linkerd's proxy) waits for its probe; an init container runs.
  const sidecars = new Set((pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === "Always").map((c) => c.name));
  const initOnly = new Set((pod.status?.initContainerStatuses ?? []).map((s) => s.name).filter((name) => !sidecars.has(name)));
  const running = statuses(pod).find((s) => s.state?.running && !s.ready);
  if (running && initOnly.has(running.name)) return { reason: `initializing: ${running.name} running`, container: running.name, previous: false };
  if (running) {
    const probe = running.started === false ? "startup probe not passing yet" : "readiness probe not passing yet";
    return { reason: `${running.name} running, ${probe}`, container: running.name, previous: false };
  }
  const starting = statuses(pod).find((s) => s.state?.waiting);
  if (starting) {
    const pulling = latest?.reason === "Pulling" ? `: ${latest.message}` : "";
    return { reason: `starting (${starting.state.waiting.reason})${pulling}`, container: undefined, previous: false };
  }
  return { reason: `${(pod.status?.phase ?? "pending").toLowerCase()}${latest ? `: ${latest.message}` : ""}`, container: undefined, previous: false };
}

const oneLine = (text) => {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat;
};

/** The progress report: a headline, then one line per pod that is not ready. */
export function summary(podList, eventList, elapsed = "") {
  const pods = (podList?.items ?? []).filter((p) => !p.metadata?.deletionTimestamp && p.status?.phase !== "Succeeded");
  const waiting = pods.map((p) => whyNotReady(p, eventList)).filter(Boolean);
  const prefix = elapsed ? `[${elapsed}] ` : "";
  if (pods.length === 0) return `${prefix}no pods yet`;
  if (waiting.length === 0) return `${prefix}all ${pods.length} pods ready`;
  const width = Math.max(...waiting.map((w) => w.pod.length));
  return [
    `${prefix}${pods.length - waiting.length} of ${pods.length} pods ready; waiting for:`,
    ...waiting.map((w) => `  ${w.pod.padEnd(width)}  ${w.reason}`),
  ].join("\n");
}

/** The pods to explain after a failure, with the container whose logs to show. */
export function failing(podList) {
  return (podList?.items ?? [])
    .map((p) => whyNotReady(p, undefined))
    .filter(Boolean)
    .map((w) => `${w.pod} ${w.container ?? "-"} ${w.previous ? "previous" : "current"}`);
}

/** A pod's events, as `kubectl describe` lists them. */
export function eventLines(eventList, podName) {
  return eventsOf(eventList, podName).map((e) => `${e.type ?? ""}\t${e.reason ?? ""}\t${e.count > 1 ? `(x${e.count}) ` : ""}${oneLine(e.message ?? "")}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const [mode, ...args] = process.argv.slice(2);
  const json = (file) => {
    try {
      return JSON.parse(readFileSync(file, "utf8"));
    } catch {
      return {}; // the cluster did not answer this time: report what is known
    }
  };
  if (mode === "summary") console.log(summary(json(args[0]), json(args[1]), args[2]));
  else if (mode === "failing") for (const line of failing(json(args[0]))) console.log(line);
  else if (mode === "events") {
    const lines = eventLines(json(args[0]), args[1]);
    for (const line of lines.length > 0 ? lines : ["(no events)"]) console.log(line);
  } else {
    console.error("usage: pods.mjs summary <pods.json> <events.json> [elapsed] | failing <pods.json> | events <events.json> <pod>");
    process.exit(64);
  }
}
