// Stand-ins for docker, kind, kubectl, helm, linkerd, grpcurl and df, for the
// deploy scripts' tests (test/deploy/scripts.test.ts): each call is recorded
// in $STANDIN_LOG (one JSON line: tool, args, whether it changed anything)
// and answered from, and applied to, a pretend machine and cluster kept in
// $STANDIN_STATE. They answer the scripts' queries the way the real tools
// do (exit status, the output the scripts read), and refuse what the real
// tools refuse (Linkerd without the Gateway API CRDs, kubectl without a
// cluster, ...), so that a wrong order of steps fails here too.
//
//   <tool> args...   (the wrappers next to this file: exec node stand-in.mjs <tool> args...)
import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

const [tool, ...args] = process.argv.slice(2);
const statePath = process.env.STANDIN_STATE;
const logPath = process.env.STANDIN_LOG;
if (!statePath || !logPath) {
  process.stderr.write("stand-in: STANDIN_STATE and STANDIN_LOG must be set\n");
  process.exit(70);
}

const state = existsSync(statePath) ? JSON.parse(readFileSync(statePath, "utf8")) : {};
state.docker ??= { daemon: true, images: [], containerdStore: true };
// Docker 29 with the buildx plugin, unless the state says otherwise.
state.docker.buildx ??= true;
state.docker.version ??= "29.0.0";
state.docker.apiVersion ??= "1.52";
state.clusters ??= {};
let changed = false;

function save() {
  writeFileSync(statePath, JSON.stringify(state, null, 2));
}
function done(code = 0) {
  appendFileSync(logPath, `${JSON.stringify({ tool, args, changed })}\n`);
  if (changed) save();
  process.exit(code);
}
function out(text) {
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}
function fail(message, code = 1) {
  process.stderr.write(`${message}\n`);
  done(code);
}
function stdin() {
  try {
    return readFileSync(0, "utf8");
  } catch {
    return "";
  }
}
/** Blocks for a while, as a command that waits (helm --wait) does. */
function pause(seconds) {
  if (seconds > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);
}
/** Removes `--flag value` (or `--flag=value`) from a copy of argv; returns its value. */
function take(list, ...names) {
  for (let i = 0; i < list.length; i++) {
    for (const name of names) {
      if (list[i] === name) {
        const value = list[i + 1];
        list.splice(i, 2);
        return value;
      }
      if (list[i].startsWith(`${name}=`)) {
        const value = list[i].slice(name.length + 1);
        list.splice(i, 1);
        return value;
      }
    }
  }
  return undefined;
}
function has(list, flag) {
  const i = list.indexOf(flag);
  if (i >= 0) list.splice(i, 1);
  return i >= 0;
}
/** The cluster a kube context names (kind-<name>), or a connection error like kubectl's. */
function cluster(context) {
  const name = context?.replace(/^kind-/, "");
  const found = name ? state.clusters[name] : undefined;
  if (!found) fail(`error: context "${context}" does not exist, or the connection to the server was refused`);
  found.crds ??= {};
  found.namespaces ??= { default: {} };
  // The Kubernetes version of the kind node image (k8s/kind-config.yaml).
  found.kubeVersion ??= "v1.35.8";
  found.images ??= [];
  return found;
}

/** The chart's defaults that the canary script reads (helm/meshcart/values.yaml). */
const CHART_DEFAULTS = { payment: { v1: { replicas: 2 }, v2: { enabled: false, replicas: 1 }, canary: { weight: 0 } } };

/** `a` with `b` laid over it, objects merged key by key (Helm's coalescing). */
function merged(a, b) {
  const out = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
    out[key] = isObject(value) && isObject(out[key]) ? merged(out[key], value) : value;
  }
  return out;
}

/** Applies one `--set a.b.c=value` as Helm types it: true/false, integers, else a string. */
function setValue(values, assignment) {
  const at = assignment.indexOf("=");
  const path = assignment.slice(0, at).split(".");
  const raw = assignment.slice(at + 1);
  const value = raw === "true" ? true : raw === "false" ? false : /^-?\d+$/.test(raw) ? Number(raw) : raw;
  let node = values;
  for (const key of path.slice(0, -1)) node = node[key] ??= {};
  node[path.at(-1)] = value;
}

/**
 * The helm binary being stood in for: its version, and the Kubernetes
 * version it assumes when it renders without a cluster (pkg/chartutil's
 * default: that of its client-go in a release build, v1.20 in a plain
 * `go install` build, which has no release -ldflags).
 */
const HELM_BUILDS = {
  release: { version: "v3.19.0+g3d8990f", defaultKubeVersion: "v1.34.0" },
  "go-install": { version: "v3.19", defaultKubeVersion: "v1.20.0" },
};
const helmBuild = HELM_BUILDS[state.helmBuild ?? "release"];

/** The chart's kubeVersion (">=1.31.0-0") against a Kubernetes version, as Helm checks it before rendering. */
function kubeVersionRefusal(chartDir, kubeVersion) {
  const wanted = /^kubeVersion:\s*"?>=\s*(\d+)\.(\d+)/m.exec(readFileSync(path.join(chartDir, "Chart.yaml"), "utf8"));
  const [, major, minor] = /^v(\d+)\.(\d+)/.exec(kubeVersion) ?? [];
  if (!wanted || !major) return undefined;
  const ok = Number(major) > Number(wanted[1]) || (Number(major) === Number(wanted[1]) && Number(minor) >= Number(wanted[2]));
  return ok ? undefined : `chart requires kubeVersion: >=${wanted[1]}.${wanted[2]}.0-0 which is incompatible with Kubernetes ${kubeVersion}`;
}

const handlers = {
  docker() {
    const a = [...args];
    const command = a.shift();
    if (command !== "version" && !state.docker.daemon)
      fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?");
    switch (command) {
      case "info": {
        const format = take(a, "-f", "--format");
        if (format === "{{json .DriverStatus}}")
          out(JSON.stringify(state.docker.containerdStore ? [["driver-type", "io.containerd.snapshotter.v1"]] : [["Backing Filesystem", "extfs"]]));
        else if (format === "{{.MemTotal}}") out(String(8 * 1024 ** 3));
        else if (format === "{{.DockerRootDir}}") out(state.docker.rootDir ?? "/var/lib/docker");
        else out("Server: Docker Engine (stand-in)");
        return done();
      }
      case "version": {
        const format = take(a, "-f", "--format");
        if (!state.docker.daemon && format?.includes("Server")) fail("Cannot connect to the Docker daemon");
        if (format === "{{.Server.Os}}/{{.Server.Arch}}") out("linux/arm64");
        else if (format === "{{.Server.Version}}") out(state.docker.version);
        else if (format === "{{.Server.APIVersion}}") out(state.docker.apiVersion);
        else out(`Docker version ${state.docker.version} (stand-in)`);
        return done();
      }
      case "image": {
        const verb = a.shift();
        if (verb === "inspect") {
          if (state.docker.images.includes(a[0])) {
            out(`[{"RepoTags":["${a[0]}"]}]`);
            return done();
          }
          return fail(`Error response from daemon: No such image: ${a[0]}`);
        }
        if (verb === "ls") {
          const filter = take(a, "--filter");
          if (take(a, "--format") !== "{{.Repository}}:{{.Tag}}" || filter !== "reference=meshcart/*") break;
          const found = state.docker.images.filter((ref) => ref.startsWith("meshcart/"));
          if (found.length > 0) out(found.join("\n"));
          return done();
        }
        if (verb === "rm") {
          for (const ref of a) if (!state.docker.images.includes(ref)) fail(`Error response from daemon: No such image: ${ref}`);
          changed = true;
          state.docker.images = state.docker.images.filter((ref) => !a.includes(ref));
          out(a.map((ref) => `Untagged: ${ref}`).join("\n"));
          return done();
        }
        break;
      }
      case "buildx": {
        if (!state.docker.buildx) fail("docker: 'buildx' is not a docker command.\nSee 'docker --help'");
        const verb = a.shift();
        if (verb === "version") return (out("github.com/docker/buildx v0.29.1 a32761aeb3debd39be1eca514af3693af0db334b"), done());
        if (verb !== "build") break;
        const tag = take(a, "--tag", "-t");
        const target = take(a, "--target");
        if (!has(a, "--load") || !tag || !target || a.at(-1) !== ".") fail("stand-in docker buildx build: expected --load, --target, --tag and the context .");
        changed = true;
        state.docker.images.push(tag);
        return done();
      }
      case "exec": {
        // docker exec <kind node> crictl inspecti <ref>
        const [container, crictl, verb, ref] = a;
        const name = container.replace(/-control-plane$/, "");
        const found = state.clusters[name];
        if (!found) fail(`Error response from daemon: No such container: ${container}`);
        if (crictl !== "crictl" || verb !== "inspecti") break;
        if ((found.images ?? []).includes(ref)) return done();
        return fail(`FATA[0000] no such image "${ref}" present`);
      }
      case "save": {
        const file = take(a, "-o", "--output");
        const platform = take(a, "--platform");
        if (state.docker.containerdStore && !platform)
          fail("stand-in docker save: with the containerd image store, --platform picks the image kind can load (kind issue 3795)");
        if (platform && !atLeast(state.docker.apiVersion, "1.48"))
          fail(`"docker save" requires API version 1.48, but the Docker daemon API version is ${state.docker.apiVersion}`);
        for (const ref of a) if (!state.docker.images.includes(ref)) fail(`Error response from daemon: No such image: ${ref}`);
        writeFileSync(file, JSON.stringify({ refs: a }));
        changed = true;
        return done();
      }
    }
    return fail(`stand-in docker: unexpected call: ${args.join(" ")}`, 64);
  },

  kind() {
    const a = [...args];
    if (a[0] === "version") return (out("kind v0.33.0 go1.25.0 linux/arm64"), done());
    if (a[0] === "get" && a[1] === "clusters") {
      const names = Object.keys(state.clusters);
      if (names.length === 0) process.stderr.write("No kind clusters found.\n");
      else out(names.join("\n"));
      return done();
    }
    if (a[0] === "create" && a[1] === "cluster") {
      const name = take(a, "--name");
      const config = take(a, "--config");
      if (!config || !existsSync(config)) fail(`stand-in kind: no config ${config}`);
      if (state.clusters[name]) fail(`ERROR: failed to create cluster: node(s) already exist for a cluster with the name "${name}"`);
      changed = true;
      state.clusters[name] = { crds: {}, namespaces: { default: {}, "kube-system": {} }, images: [] };
      return done();
    }
    if (a[0] === "delete" && a[1] === "cluster") {
      const name = take(a, "--name");
      changed = name in state.clusters;
      delete state.clusters[name];
      return done();
    }
    if (a[0] === "load" && a[1] === "image-archive") {
      const name = take(a, "--name");
      const found = state.clusters[name];
      if (!found) fail(`ERROR: no nodes found for cluster "${name}"`);
      const { refs } = JSON.parse(readFileSync(a[2], "utf8"));
      changed = true;
      found.images = [...new Set([...(found.images ?? []), ...refs.map((ref) => `docker.io/${ref}`)])];
      return done();
    }
    return fail(`stand-in kind: unexpected call: ${args.join(" ")}`, 64);
  },

  kubectl() {
    const a = [...args];
    if (a[0] === "version") return (out("Client Version: v1.35.0\nKustomize Version: v5.7.1"), done());
    const context = take(a, "--context");
    const namespace = take(a, "--namespace", "-n");
    const c = cluster(context);
    const output = take(a, "-o", "--output");
    const jsonpath = output?.startsWith("jsonpath=") ? output.slice("jsonpath=".length) : undefined;
    const verb = a.shift();
    if (verb === "get") {
      const [kind, name] = a;
      if (kind === "crd") {
        const crd = c.crds[name];
        if (!crd) fail(`Error from server (NotFound): customresourcedefinitions.apiextensions.k8s.io "${name}" not found`);
        if (jsonpath?.includes("bundle-version")) out(crd.bundleVersion ?? "");
        return done();
      }
      if (kind === "namespace") {
        const ns = c.namespaces[name];
        if (!ns) fail(`Error from server (NotFound): namespaces "${name}" not found`);
        const key = /annotations\.(.+)\}$/.exec(jsonpath ?? "")?.[1]?.replaceAll("\\.", ".");
        if (key) out(ns[key] ?? "");
        return done();
      }
      if (kind === "deployment" && name === "linkerd-destination" && namespace === "linkerd") {
        return c.linkerd ? done() : fail('Error from server (NotFound): deployments.apps "linkerd-destination" not found');
      }
      // The pods and events of the namespace, as the scripts read them (-o json).
      if ((kind === "pods" || kind === "events") && output === "json") {
        out(JSON.stringify({ apiVersion: "v1", kind: "List", items: c[kind]?.[namespace] ?? [] }));
        return done();
      }
      if (kind === "secret" && name === "storefront-jwt") {
        if (!c.release) fail('Error from server (NotFound): secrets "storefront-jwt" not found');
        out(Buffer.from("stand-in-storefront-signing-key-of-48-characters!!").toString("base64"));
        return done();
      }
    }
    if (verb === "apply") {
      const serverSide = has(a, "--server-side");
      const file = take(a, "-f", "--filename");
      if (file === "-") {
        const manifest = stdin();
        const kinds = [...manifest.matchAll(/^# stand-in: (\S+)(.*)$/gm)];
        if (kinds.length === 0) fail("stand-in kubectl apply -f -: nothing to apply");
        changed = true;
        for (const [, what, rest] of kinds) {
          if (what === "linkerd-crds") for (const crd of ["servers.policy.linkerd.io", "authorizationpolicies.policy.linkerd.io"]) c.crds[crd] = {};
          if (what === "linkerd-control-plane") {
            c.linkerd = { settings: rest.trim() };
            c.namespaces.linkerd ??= {};
          }
          if (what === "linkerd-viz") c.namespaces["linkerd-viz"] ??= {};
        }
        return done();
      }
      const gateway = /gateway-api\/releases\/download\/(v[0-9.]+)\/standard-install\.yaml$/.exec(file ?? "");
      if (gateway && serverSide) {
        changed = true;
        for (const crd of ["gateways", "gatewayclasses", "httproutes", "grpcroutes", "referencegrants"]) {
          c.crds[`${crd}.gateway.networking.k8s.io`] = { bundleVersion: gateway[1] };
        }
        return done();
      }
    }
    if (verb === "create" && a[0] === "namespace") {
      if (c.namespaces[a[1]]) fail(`Error from server (AlreadyExists): namespaces "${a[1]}" already exists`);
      changed = true;
      c.namespaces[a[1]] = {};
      return done();
    }
    if (verb === "annotate" && a[0] === "namespace") {
      has(a, "--overwrite");
      const ns = c.namespaces[a[1]];
      if (!ns) fail(`Error from server (NotFound): namespaces "${a[1]}" not found`);
      const [key, value] = a[2].split("=");
      changed = true;
      ns[key] = value;
      return done();
    }
    if (verb === "logs") {
      const container = take(a, "-c", "--container");
      take(a, "--tail");
      const previous = has(a, "--previous");
      const logs = c.logs?.[`${namespace}/${a[0]}/${container}${previous ? "/previous" : ""}`];
      if (logs === undefined) fail(`error: container ${container} in pod ${a[0]} has no logs here`);
      out(logs);
      return done();
    }
    if (verb === "port-forward") return done();
    return fail(`stand-in kubectl: unexpected call: ${args.join(" ")}`, 64);
  },

  helm() {
    const a = [...args];
    if (a[0] === "version") return (out(helmBuild.version), done());
    const context = take(a, "--kube-context");
    const namespace = take(a, "--namespace", "-n");
    const verb = a.shift();
    if (verb === "template" && a.includes("--show-only")) {
      // make mesh asks what the chart installs with the release's values:
      // that is Helm's own values merging, which a stand-in would only
      // imitate, so the real helm (make test installs it) answers.
      const real = process.env.STANDIN_REAL_HELM;
      if (!real) fail("stand-in helm template --show-only: STANDIN_REAL_HELM must name the real helm");
      const answer = spawnSync(real, args, { encoding: "utf8" });
      process.stdout.write(answer.stdout ?? "");
      process.stderr.write(answer.stderr ?? "");
      return done(answer.status ?? 1);
    }
    const c = cluster(context);
    /**
     * What the chart would render: the same for the same chart, values,
     * namespace, Kubernetes version (templates may ask .Capabilities) and
     * generated passwords. Like Helm's, it changes with the contents of the
     * chart and of the values files, not only with the arguments naming
     * them. The passwords are the live Secrets' when Helm may read the
     * cluster (lookup), fresh random ones otherwise.
     */
    const manifest = (rest, { kubeVersion, lookup }) =>
      `# stand-in manifest\nnamespace: ${namespace}\nargs: ${JSON.stringify(rest)}\ncontents: ${contentsDigest(rest)}\n` +
      `kubeVersion: ${kubeVersion}\npasswords: ${lookup ? "the live Secrets'" : `random ${Math.random().toString(36).slice(2)}`}\n`;
    const chartDir = (rest) => rest.find((arg) => /^[^-].*\/meshcart$/.test(arg) && existsSync(arg));
    if (verb === "list") {
      const deployed = has(a, "--deployed");
      has(a, "--short");
      const filter = new RegExp(take(a, "--filter") ?? ".*");
      if (c.release && c.release.namespace === namespace && deployed && filter.test(c.release.name)) out(c.release.name);
      return done();
    }
    if (verb === "get" && a[0] === "manifest") {
      if (!c.release || c.release.name !== a[1]) fail(`Error: release: not found`);
      process.stdout.write(c.release.manifest);
      return done();
    }
    if (verb === "template") {
      // Helm's capabilities: the cluster's with --validate, else
      // --kube-version, else its own built-in default; lookups read the
      // cluster only with --dry-run=server.
      const validate = has(a, "--validate");
      const kubeVersion = validate ? c.kubeVersion : (take(a, "--kube-version") ?? helmBuild.defaultKubeVersion);
      const lookup = has(a, "--dry-run=server");
      if (!has(a, "--skip-tests")) fail("stand-in helm template: the deploy script compares with the release's manifest, which lists no tests (--skip-tests)");
      const refusal = kubeVersionRefusal(chartDir(a), kubeVersion);
      if (refusal) fail(`Error: ${refusal}`);
      process.stdout.write(manifest(a, { kubeVersion, lookup }));
      return done();
    }
    if (verb === "get" && a[0] === "values") {
      if (!c.release || c.release.name !== a[1] || c.release.namespace !== namespace) fail(`Error: release: not found`);
      if (!has(a, "--all") || take(a, "-o", "--output") !== "json") fail("stand-in helm get values: expected --all -o json");
      out(JSON.stringify(merged(CHART_DEFAULTS, c.release.values ?? {})));
      return done();
    }
    if (verb === "upgrade") {
      // The deploy script installs (--install); the canary script changes
      // values of the installed release and must keep the others.
      const install = has(a, "--install");
      const reuse = has(a, "--reset-then-reuse-values") || has(a, "--reuse-values");
      if (!has(a, "--wait")) fail("stand-in helm upgrade: expected --wait");
      take(a, "--timeout");
      // How long the wait takes, and how it ends (state.helmWait: { seconds, error }).
      pause(state.helmWait?.seconds ?? 0);
      if (state.helmWait?.error) fail(state.helmWait.error);
      if (!c.namespaces[namespace]) fail(`Error: create: failed to create: namespaces "${namespace}" not found`);
      if (!install && (!c.release || c.release.name !== a[0])) fail(`Error: UPGRADE FAILED: "${a[0]}" has no deployed releases`);
      const refusal = kubeVersionRefusal(chartDir(a), c.kubeVersion);
      if (refusal) fail(`Error: UPGRADE FAILED: ${refusal}`);
      const rendered = manifest(a, { kubeVersion: c.kubeVersion, lookup: true });
      const sets = {};
      for (let set = take(a, "--set"); set !== undefined; set = take(a, "--set")) setValue(sets, set);
      changed = true;
      c.release = {
        name: a[0],
        namespace,
        manifest: rendered,
        revision: (c.release?.revision ?? 0) + 1,
        // Without a reuse flag Helm starts again from the chart's defaults.
        values: merged(reuse ? (c.release?.values ?? {}) : {}, sets),
      };
      return done();
    }
    if (verb === "test") return c.release ? done() : fail("Error: release: not found");
    return fail(`stand-in helm: unexpected call: ${args.join(" ")}`, 64);
  },

  linkerd() {
    const a = [...args];
    if (a[0] === "version") return (out("edge-26.6.3"), done());
    const context = take(a, "--context");
    const c = cluster(context);
    const verb = a.shift();
    const viz = verb === "viz";
    const sub = viz ? a.shift() : verb;
    if (!viz && sub === "check") {
      const pre = has(a, "--pre");
      if (!pre && !c.linkerd) fail("× control plane is not installed");
      return (out("Status check results are √"), done());
    }
    if (!viz && (sub === "install" || sub === "upgrade")) {
      const crds = has(a, "--crds");
      if (!c.crds["grpcroutes.gateway.networking.k8s.io"]) {
        fail("Error: the Gateway API CRDs must be installed first (Linkerd 2.19+ does not install them)");
      }
      if (crds) return (out("# stand-in: linkerd-crds"), done());
      if (!c.crds["servers.policy.linkerd.io"]) fail("Error: Linkerd CRDs must be installed first: run linkerd install --crds");
      if (sub === "upgrade" && !c.linkerd) fail("Error: Linkerd is not installed: use linkerd install");
      return (out(`# stand-in: linkerd-control-plane ${a.join(" ")}`), done());
    }
    if (viz && sub === "install") {
      if (!c.linkerd) fail("Error: the Linkerd control plane must be installed first");
      const values = take(a, "-f", "--values");
      if (!values || !existsSync(values)) fail(`stand-in linkerd viz install: no values file ${values}`);
      return (out("# stand-in: linkerd-viz"), done());
    }
    if (viz && sub === "check") return c.namespaces["linkerd-viz"] ? done() : fail("× linkerd-viz is not installed");
    if (viz && (sub === "dashboard" || sub === "edges" || sub === "stat")) return done();
    return fail(`stand-in linkerd: unexpected call: ${args.join(" ")}`, 64);
  },

  grpcurl() {
    const a = [...args];
    if (a[0] === "-version") return (out("grpcurl v1.9.3"), done());
    const method = a.at(-1);
    if (method === "list") return (out("grpc.health.v1.Health\ngrpc.reflection.v1.ServerReflection\nmeshcart.storefront.v1.StorefrontService"), done());
    const auth = a[a.indexOf("-H") + 1] ?? "";
    if (!/^authorization: Bearer \S+$/.test(auth)) fail("ERROR:\n  Code: Unauthenticated");
    if (method?.endsWith("/PlaceOrder") || method?.endsWith("/GetOrder")) {
      return (out(JSON.stringify({ order: { orderId: "ord_0a1b2c3d", status: "ORDER_STATUS_CONFIRMED" } }, null, 2)), done());
    }
    if (method?.endsWith("/GetOrderDetails")) {
      const shipment = { shipmentId: "shp_0a1b2c3d", status: "PENDING", updatedAt: "2026-01-01T00:00:00Z" };
      return (
        out(
          JSON.stringify(
            { order: { orderId: "ord_0a1b2c3d", status: "ORDER_STATUS_CONFIRMED" }, paymentStatus: {}, productsStatus: {}, shipment, shipmentStatus: {} },
            null,
            2,
          ),
        ),
        done()
      );
    }
    return fail(`stand-in grpcurl: unexpected call: ${args.join(" ")}`, 64);
  },
};

handlers.df = () => {
  // df -Pk <path>: the free space the state gives that path (state.diskFree, in GiB; default 100).
  const a = [...args];
  if (!has(a, "-Pk")) fail("stand-in df: expected -Pk", 64);
  const free = (state.diskFree?.[a[0]] ?? state.diskFree?.default ?? 100) * 1024 * 1024;
  out(`Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/stand-in ${2 * free} ${free} ${free} 50% /`);
  return done();
};

/** Whether dotted version a >= b. */
function atLeast(a, b) {
  const [x, y] = [a, b].map((v) => v.split(".").map(Number));
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return true;
}

if (!(tool in handlers)) fail(`stand-in: unknown tool ${tool}`, 64);
handlers[tool]();

/** A digest of every file of the chart directories and values files an argument list names. */
function contentsDigest(rest) {
  const hash = createHash("sha256");
  const add = (file) => {
    if (statSync(file).isDirectory()) {
      for (const entry of readdirSync(file).sort()) add(path.join(file, entry));
    } else {
      hash.update(`${file}\0`).update(readFileSync(file)).update("\0");
    }
  };
  rest.forEach((arg, i) => {
    const named = rest[i - 1] === "-f" || rest[i - 1] === "--values" || /^[^-].*\/meshcart$/.test(arg);
    if (named && existsSync(arg)) add(arg);
  });
  return hash.digest("hex").slice(0, 16);
}
