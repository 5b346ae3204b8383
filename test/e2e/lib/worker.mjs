#!/usr/bin/env node
// The one way to start a local moq-worker for tests, scripts and benchmarks.
//
// As a module: `await startWorker({ mode, port, persistTo, vars })` resolves
// once GET /healthz answers, to { kind, url, state, pids(), output(), stop() }.
// Modes:
//   wrangler   `wrangler dev` from a source tree (default; what `npm start` runs)
//   miniflare  the built bundle (`wrangler deploy --dry-run`) under Miniflare
//   workerd    the built bundle on bare workerd, no Miniflare entry worker;
//              options `cluster` (instances sharing Durable Objects through an
//              S3 bucket, see clusterConfig) and `cpus` (pinned with taskset)
//
// As a command (used by `npm start`, the edge's Rust tests and shell scripts):
//   node test/e2e/lib/worker.mjs [--port P] [--persist-to DIR] [--var K:V]...
//                                [--mode wrangler|miniflare|workerd] [--log]
// prints the Worker's URL on stdout once it is healthy, then runs until
// SIGTERM/SIGINT/SIGHUP, which stops every process it started.
//
// wrangler runs workerd as a grandchild, so it gets its own process group and
// the whole group is stopped; a state directory this module created is removed.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const DEV_ADMIN_TOKEN = "dev-admin-token";
export const DEV_TOKEN_SECRET = "dev-token-secret";
export const MODES = ["wrangler", "miniflare", "workerd"];

const QUIET_WRANGLER = { WRANGLER_SEND_METRICS: "false", CI: "1" };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** The local development variables (README "Run it"), with `extra` on top. */
export function devVars(extra = {}) {
  return { ADMIN_TOKEN: DEV_ADMIN_TOKEN, TOKEN_SECRET: DEV_TOKEN_SECRET, ALLOW_UNSCOPED: "true", ...extra };
}

/** pid and its descendants (by /proc ppid). */
export function processTree(root) {
  const children = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch {}
  }
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(root);
  return out;
}

/** A process's command name ("" once it is gone). */
export function commOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

/** The Durable Object bindings, compatibility date and vars declared in wrangler.toml. */
export function wranglerConfig(root = ROOT) {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  const compatibilityDate = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml)?.[1];
  const durableObjects = {};
  for (const block of toml.split(/^\[\[durable_objects\.bindings\]\]\s*$/m).slice(1)) {
    const name = /^name\s*=\s*"([^"]+)"/m.exec(block)?.[1];
    const className = /^class_name\s*=\s*"([^"]+)"/m.exec(block)?.[1];
    if (name && className) durableObjects[name] = { className, useSQLite: true };
  }
  const vars = {};
  const varsBlock = /^\[vars\]\s*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(toml)?.[1] ?? "";
  for (const m of varsBlock.matchAll(/^(\w+)\s*=\s*"([^"]*)"/gm)) vars[m[1]] = m[2];
  return { compatibilityDate, durableObjects, vars };
}

/** Builds the deployable bundle of a source tree into a fresh temp dir, as `npm run build` does. */
export function buildBundle(root = ROOT) {
  const outdir = mkdtempSync(join(tmpdir(), "moq-worker-dist-"));
  try {
    execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...QUIET_WRANGLER },
    });
  } catch (e) {
    throw new Error(`building the Worker failed (npx wrangler deploy --dry-run in ${root}):\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
  return {
    dir: outdir,
    root,
    config: wranglerConfig(root),
    modules: bundleModules(outdir),
    remove: () => rmSync(outdir, { recursive: true, force: true }),
  };
}

/**
 * The modules wrangler wrote (index.js first), typed by wrangler's default
 * module rules: .js/.mjs ES modules, .html/.txt/.sql text, .wasm compiled
 * WebAssembly, .bin data.
 */
function bundleModules(dir) {
  const types = [
    [/\.m?js$/, "ESModule"],
    [/\.(html|txt|sql)$/, "Text"],
    [/\.wasm$/, "CompiledWasm"],
    [/\.bin$/, "Data"],
  ];
  const mods = [];
  for (const name of readdirSync(dir)) {
    if (name.endsWith(".map") || name === "README.md" || name.endsWith(".capnp")) continue;
    const type = types.find(([re]) => re.test(name))?.[1];
    if (!type) throw new Error(`bundle: no module type for ${name}`);
    mods.push({ name, type });
  }
  mods.sort((a, b) => (a.name === "index.js" ? -1 : b.name === "index.js" ? 1 : a.name.localeCompare(b.name)));
  return mods;
}

/** A command line run on the given CPUs only (`taskset`; as a stand-in for a machine of its own), or as it is. */
export const pinned = (cpus, argv) => (cpus ? ["taskset", "--cpu-list", cpus, ...argv] : argv);

/** A child process with the tail of its output kept; `group` puts it in its own process group. */
export function spawnLogged(cmd, args, { group = false, log = false, ...opts } = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", log ? "inherit" : "pipe", log ? "inherit" : "pipe"], detached: group, ...opts });
  let output = "";
  const keep = (d) => (output = (output + d).slice(-16_000));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  // A command that cannot start emits "error" and no "exit": it counts as exited.
  let failed = false;
  const exited = new Promise((r) => {
    child.once("exit", r);
    child.once("error", (e) => {
      failed = true;
      keep(`${cmd}: ${e.message}\n`);
      r();
    });
  });
  const kill = (signal) => {
    try {
      if (group) process.kill(-child.pid, signal);
      else child.kill(signal);
    } catch {}
  };
  return {
    child,
    output: () => output,
    running: () => !failed && child.exitCode === null && child.signalCode === null,
    /** signal, then SIGKILL after 5 s; resolves when the child has exited. */
    async stop(signal = "SIGTERM") {
      if (failed || child.exitCode !== null || child.signalCode !== null) return;
      kill(signal);
      const timer = setTimeout(() => kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function waitHealthy(url, proc, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running()) throw new Error(`${what} exited early:\n${proc.output()}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${what} did not answer on ${url} within ${timeoutMs} ms:\n${proc.output()}`);
    await sleep(100);
  }
}

/**
 * Starts a Worker and resolves once /healthz answers.
 * @param {object} o
 * @param {"wrangler"|"miniflare"|"workerd"} [o.mode]
 * @param {number} [o.port]       default: a free port
 * @param {string} [o.persistTo]  Durable Object state; default: a temp dir, removed by stop()
 * @param {Record<string,string>} [o.vars]  on top of devVars() (and wrangler.toml's [vars])
 * @param {string} [o.root]       source tree (wrangler mode; the bundle's when built here)
 * @param {object} [o.bundle]     from buildBundle() (miniflare/workerd); default: built from root
 * @param {number} [o.inspectorPort]
 * @param {boolean} [o.log]       pass the runtime's output through
 * @param {object} [o.cluster]    workerd only: join a cluster (see clusterConfig)
 * @param {string} [o.cpus]       workerd only: CPU list to pin it to ("0", "1-3")
 */
export async function startWorker({
  mode = "wrangler",
  port,
  persistTo,
  vars = {},
  root = ROOT,
  bundle,
  inspectorPort,
  log = false,
  timeoutMs = 120_000,
  cluster,
  cpus,
} = {}) {
  if (!MODES.includes(mode)) throw new Error(`mode must be one of ${MODES.join(", ")}, got ${mode}`);
  port ??= await freePort();
  const ownState = persistTo === undefined;
  const state = ownState ? mkdtempSync(join(tmpdir(), "moq-worker-state-")) : resolve(persistTo);
  mkdirSync(state, { recursive: true });
  const ownBundle = mode !== "wrangler" && !bundle;
  if (ownBundle) bundle = buildBundle(root);
  const cleanup = () => {
    if (ownState) rmSync(state, { recursive: true, force: true });
    if (ownBundle) bundle.remove();
  };
  try {
    if ((cluster || cpus) && mode !== "workerd") throw new Error("cluster and cpus need mode workerd");
    const started = await launchers[mode]({ port, state, vars: devVars(vars), root, bundle, inspectorPort, log, timeoutMs, cluster, cpus });
    return {
      ...started,
      state,
      async stop(signal) {
        await started.stop(signal);
        cleanup();
      },
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}

const launchers = {
  async wrangler({ port, state, vars, root, inspectorPort, log, timeoutMs }) {
    const args = [
      "wrangler",
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      state,
      "--inspector-port",
      String(inspectorPort ?? 0),
      "--show-interactive-dev-session=false",
    ];
    for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
    const p = spawnLogged("npx", args, { cwd: root, group: true, log, env: { ...process.env, ...QUIET_WRANGLER } });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitHealthy(url, p, "wrangler dev", timeoutMs);
    } catch (e) {
      await p.stop("SIGKILL");
      throw e;
    }
    // npx, wrangler (node, running the dev proxy) and the workerd processes it started.
    return { kind: "moq-worker (wrangler dev)", url, pids: () => processTree(p.child.pid), output: p.output, stop: p.stop };
  },

  async miniflare({ port, state, vars, bundle, inspectorPort }) {
    const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");
    const cfg = bundle.config;
    const options = {
      host: "127.0.0.1",
      port,
      ...(inspectorPort ? { inspectorPort } : {}),
      resourcePersistencePath: state,
      name: "moq-worker",
      modules: bundle.modules.map((m) => ({ type: m.type, path: join(bundle.dir, m.name) })),
      modulesRoot: bundle.dir,
      compatibilityDate: cfg.compatibilityDate,
      durableObjects: cfg.durableObjects,
      bindings: { ...cfg.vars, ...vars },
    };
    const before = new Set(processTree(process.pid));
    // Miniflare 5 takes a new option shape; it converts the v4 shape documented in its README.
    const mf = new Miniflare(convertV4MiniflareOptions ? convertV4MiniflareOptions(options) : options);
    let url;
    try {
      url = (await mf.ready).href.replace(/\/$/, "");
    } catch (e) {
      await mf.dispose().catch(() => {});
      throw e;
    }
    // The workerd process Miniflare started (requests go to it directly, not through this process).
    const workerd = processTree(process.pid).filter((p) => !before.has(p) && commOf(p) === "workerd");
    return { kind: "moq-worker (Miniflare, built bundle)", url, pids: () => workerd, output: () => "", stop: () => mf.dispose() };
  },

  async workerd({ port, state, vars, bundle, inspectorPort, log, timeoutMs, cluster, cpus }) {
    const cfg = bundle.config;
    const q = JSON.stringify;
    const bindings = [
      ...Object.entries({ ...cfg.vars, ...vars }).map(([k, v]) => `(name = ${q(k)}, text = ${q(String(v))})`),
      ...Object.entries(cfg.durableObjects).map(([k, d]) => `(name = ${q(k)}, durableObjectNamespace = (className = ${q(d.className)}))`),
    ];
    const namespaces = Object.values(cfg.durableObjects).map(
      (d) => `(className = ${q(d.className)}, uniqueKey = ${q(`moq-worker-${d.className}`)}, enableSql = true)`,
    );
    const field = { ESModule: "esModule", Text: "text", CompiledWasm: "wasm", Data: "data" };
    const modules = bundle.modules.map((m) => `(name = ${q(m.name)}, ${field[m.type]} = embed ${q(m.name)})`);
    const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .moqWorker), (name = "disk", disk = (path = ${q(state)}, writable = true)) ],
  sockets = [ (name = "http", address = ${q(`127.0.0.1:${port}`)}, http = (), service = "main") ],${clusterConfig(cluster)}
);
const moqWorker :Workerd.Worker = (
  modules = [ ${modules.join(", ")} ],
  compatibilityDate = ${q(cfg.compatibilityDate)},
  bindings = [ ${bindings.join(", ")} ],
  durableObjectNamespaces = [ ${namespaces.join(", ")} ],
  durableObjectStorage = (localDisk = "disk"),
);
`;
    const file = join(bundle.dir, `workerd-${port}.capnp`);
    writeFileSync(file, config);
    const bin = join(ROOT, "node_modules", ".bin", "workerd");
    const inspector = inspectorPort ? [`--inspector-addr=127.0.0.1:${inspectorPort}`] : [];
    const serve = [bin, "serve", file, "--experimental", ...inspector];
    const [cmd, ...args] = pinned(cpus, serve);
    const p = spawnLogged(cmd, args, { log });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitHealthy(url, p, "workerd", Math.min(timeoutMs, 30_000));
    } catch (e) {
      await p.stop("SIGKILL");
      throw e;
    }
    return { kind: "moq-worker (bare workerd, built bundle)", url, pids: () => [p.child.pid], output: p.output, stop: p.stop };
  },
};

/**
 * The `cluster` stanza of a workerd config: instances that share an
 * S3-compatible bucket own Durable Objects between them, each object on one
 * instance's thread (workerd's experimental cluster mode). `cluster`: { bucket
 * ("s3://name/prefix"), bucketOptions (["aws_endpoint=...", ...]), address
 * (this instance's peer port, loopback), key (>= 32 bytes, shared) }.
 */
function clusterConfig(cluster) {
  if (!cluster) return "";
  const q = JSON.stringify;
  const options = cluster.bucketOptions.map(q).join(", ");
  return `\n  cluster = (bucket = ${q(cluster.bucket)}, bucketOptions = [ ${options} ], address = ${q(cluster.address)}, key = ${q(cluster.key)}),`;
}

/** The command-line face: see the top of this file. */
async function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: "string", default: "wrangler" },
      port: { type: "string" },
      "persist-to": { type: "string" },
      var: { type: "string", multiple: true, default: [] },
      log: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      readFileSync(fileURLToPath(import.meta.url), "utf8")
        .split("\n")
        .slice(10, 16)
        .join("\n")
        .replace(/^\/\/ ?/gm, ""),
    );
    return;
  }
  const vars = {};
  for (const kv of values.var) {
    const i = kv.indexOf(":");
    if (i <= 0) throw new Error(`--var takes NAME:VALUE, got ${kv}`);
    vars[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw new Error(`--port: not a port: ${values.port}`);
  const worker = await startWorker({ mode: values.mode, port, persistTo: values["persist-to"], vars, log: values.log });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    worker.stop().then(() => process.exit(0));
  };
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(signal, stop);
  console.log(worker.url);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`worker: ${e.message}`);
    process.exit(1);
  });
}
