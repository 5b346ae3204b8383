// Starting and stopping the systems under test, all on 127.0.0.1:
//  - moq-worker, the built bundle (wrangler deploy --dry-run) served by
//    Miniflare's workerd directly ("workerd");
//  - moq-worker under `wrangler dev` (workerd behind wrangler's dev proxy);
//  - moq-api (crates.io) with its own redis-server.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { homedir, tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import { DEV_ADMIN_TOKEN, devVars, freePort, ROOT } from "../../scripts/lib/dev-worker.mjs";

export const MOQ_API_BIN =
  process.env.MOQ_API_BIN ?? join(process.env.MOQ_BENCH_BIN_ROOT ?? join(homedir(), ".cache/moq-worker/cargo-bin"), "bin/moq-api");

const CLK_TCK = 100; // Linux USER_HZ, the unit of /proc/<pid>/stat times

/** user+system CPU milliseconds of processes (all their threads), from /proc; 0 for gone ones. */
export function cpuMs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    } catch {}
  }
  return (ticks * 1000) / CLK_TCK;
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

const commOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
};

export { freePort };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, probe, timeoutMs, output) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await probe()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms\n${output?.() ?? ""}`);
    await sleep(100);
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

/**
 * The source to benchmark: the working tree, or (ref given) a snapshot of that
 * git commit extracted to a temp dir, sharing this checkout's node_modules.
 */
export function sourceTree(ref, patches = []) {
  if (!ref) {
    if (patches.length) throw new Error("patches apply to a --ref snapshot, not to the working tree");
    return { root: ROOT, commit: undefined, patches: [], remove() {} };
  }
  const commit = execFileSync("git", ["rev-parse", "--verify", `${ref}^{commit}`], { cwd: ROOT, encoding: "utf8" }).trim();
  const root = mkdtempSync(join(tmpdir(), "moq-worker-bench-src-"));
  execFileSync("bash", ["-c", `git archive ${commit} | tar -x -C "${root}"`], { cwd: ROOT });
  symlinkSync(join(ROOT, "node_modules"), join(root, "node_modules"));
  for (const p of patches) execFileSync("git", ["apply", resolvePath(ROOT, p)], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  return { root, commit, patches, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** Builds the deployable bundle of a source tree into a fresh temp dir, as `npm run build` does. */
export function buildBundle(root = ROOT) {
  const outdir = mkdtempSync(join(tmpdir(), "moq-worker-bench-dist-"));
  try {
    execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
    });
  } catch (e) {
    throw new Error(`building the Worker failed (npx wrangler deploy --dry-run in ${root}):\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
  return { dir: outdir, root, config: wranglerConfig(root), modules: bundleModules(outdir), remove: () => rmSync(outdir, { recursive: true, force: true }) };
}

/**
 * The modules wrangler wrote (index.js first), typed by wrangler's default
 * module rules: .js/.mjs ES modules, .html/.txt/.sql text, .wasm compiled
 * WebAssembly, .bin data.
 */
function bundleModules(dir) {
  const types = [[/\.m?js$/, "ESModule"], [/\.(html|txt|sql)$/, "Text"], [/\.wasm$/, "CompiledWasm"], [/\.bin$/, "Data"]];
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

/**
 * moq-worker's built bundle under Miniflare (workerd, no dev proxy). State
 * is persisted on disk under a temp dir, like `wrangler dev --persist-to`.
 */
export async function startMiniflare({ bundle, inspectorPort, vars = {} }) {
  const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");
  const cfg = bundle.config;
  const bundleDir = bundle.dir;
  const state = mkdtempSync(join(tmpdir(), "moq-worker-bench-state-"));
  const port = await freePort();
  const options = {
    host: "127.0.0.1",
    port,
    ...(inspectorPort ? { inspectorPort } : {}),
    resourcePersistencePath: state,
    name: "moq-worker",
    modules: bundle.modules.map((m) => ({ type: m.type, path: join(bundleDir, m.name) })),
    modulesRoot: bundleDir,
    compatibilityDate: cfg.compatibilityDate,
    durableObjects: cfg.durableObjects,
    bindings: { ...cfg.vars, ...devVars(vars) },
  };
  const before = new Set(processTree(process.pid));
  // Miniflare 5 takes a new option shape; it converts the v4 shape documented in its README.
  const mf = new Miniflare(convertV4MiniflareOptions ? convertV4MiniflareOptions(options) : options);
  let url;
  try {
    url = (await mf.ready).href.replace(/\/$/, "");
  } catch (e) {
    await mf.dispose().catch(() => {});
    rmSync(state, { recursive: true, force: true });
    throw e;
  }
  // The workerd process Miniflare started (requests go to it directly, not through this process).
  const workerd = processTree(process.pid).filter((p) => !before.has(p) && commOf(p) === "workerd");
  return {
    kind: "moq-worker (Miniflare, built bundle)",
    url,
    pids: () => workerd,
    async stop() {
      await mf.dispose();
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/**
 * moq-worker's built bundle on bare workerd (the same binary Miniflare runs),
 * configured directly: no Miniflare entry worker in front of the Worker, the
 * closest local equivalent of how Cloudflare runs it. SQLite Durable Objects
 * on local disk under a temp dir.
 */
export async function startWorkerd({ bundle, vars = {}, inspectorPort }) {
  const cfg = bundle.config;
  const state = mkdtempSync(join(tmpdir(), "moq-worker-bench-state-"));
  const port = await freePort();
  const q = JSON.stringify;
  const bindings = [
    ...Object.entries({ ...cfg.vars, ...devVars(vars) }).map(([k, v]) => `(name = ${q(k)}, text = ${q(String(v))})`),
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
  sockets = [ (name = "http", address = ${q(`127.0.0.1:${port}`)}, http = (), service = "main") ],
);
const moqWorker :Workerd.Worker = (
  modules = [ ${modules.join(", ")} ],
  compatibilityDate = ${q(cfg.compatibilityDate)},
  bindings = [ ${bindings.join(", ")} ],
  durableObjectNamespaces = [ ${namespaces.join(", ")} ],
  durableObjectStorage = (localDisk = "disk"),
);
`;
  const file = join(bundle.dir, "workerd.capnp");
  writeFileSync(file, config);
  const bin = join(ROOT, "node_modules", ".bin", "workerd");
  const p = spawnLogged(bin, ["serve", file, "--experimental", ...(inspectorPort ? [`--inspector-addr=127.0.0.1:${inspectorPort}`] : [])]);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor("workerd", async () => {
      if (p.child.exitCode !== null) throw new Error("exited");
      return (await fetch(`${url}/healthz`)).ok;
    }, 30_000, p.output);
  } catch (e) {
    await p.stop();
    throw e;
  }
  return {
    kind: "moq-worker (bare workerd, built bundle)",
    url,
    pids: () => [p.child.pid],
    async stop() {
      await p.stop();
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/**
 * moq-worker under `wrangler dev` (the dev proxy in front of workerd), from
 * the given source tree; as scripts/lib/dev-worker.mjs starts it.
 */
export async function startWranglerDev({ root = ROOT, vars = {}, timeoutMs = 120_000 } = {}) {
  const port = await freePort();
  const state = mkdtempSync(join(tmpdir(), "moq-worker-bench-state-"));
  const argv = ["wrangler", "dev", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state,
    "--inspector-port", "0", "--show-interactive-dev-session=false"];
  for (const [k, v] of Object.entries(devVars(vars))) argv.push("--var", `${k}:${v}`);
  const p = spawnLogged("npx", argv, { cwd: root, detached: true, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" } });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    // wrangler runs workerd as a grandchild: stop the whole process group.
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    const exited = new Promise((r) => p.child.once("exit", r));
    try {
      process.kill(-p.child.pid, "SIGTERM");
    } catch {}
    const t = setTimeout(() => {
      try {
        process.kill(-p.child.pid, "SIGKILL");
      } catch {}
    }, 5000);
    await exited;
    clearTimeout(t);
    rmSync(state, { recursive: true, force: true });
  };
  try {
    await waitFor("wrangler dev", async () => {
      if (p.child.exitCode !== null) throw new Error("exited");
      return (await fetch(`${url}/healthz`)).ok;
    }, timeoutMs, p.output);
  } catch (e) {
    await stop();
    throw e;
  }
  // wrangler (node, running the dev proxy) and the workerd processes it started.
  return { kind: "moq-worker (wrangler dev)", url, stop, pids: () => processTree(p.child.pid) };
}

function spawnLogged(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  let output = "";
  child.stdout.on("data", (d) => (output = (output + d).slice(-8000)));
  child.stderr.on("data", (d) => (output = (output + d).slice(-8000)));
  const exited = new Promise((r) => child.once("exit", r));
  return {
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** moq-api with a private redis-server (no persistence: redis as a cache, as moq-api uses it). */
export async function startMoqApi() {
  if (!existsSync(MOQ_API_BIN)) {
    throw new Error(`moq-api not found at ${MOQ_API_BIN}: run scripts/bench-deps.sh first`);
  }
  const redisPort = await freePort();
  const redisDir = mkdtempSync(join(tmpdir(), "moq-worker-bench-redis-"));
  const redis = spawnLogged("redis-server", [
    "--bind", "127.0.0.1", "--port", String(redisPort), "--save", "", "--appendonly", "no",
    "--dir", redisDir, "--daemonize", "no", "--protected-mode", "yes",
  ]);
  let api;
  const url = await (async () => {
    try {
      await waitFor("redis-server", () => redisCommand(redisPort, ["PING"]).then((r) => r.startsWith("+PONG")), 10_000, redis.output);
      const apiPort = await freePort();
      api = spawnLogged(MOQ_API_BIN, ["--bind", `127.0.0.1:${apiPort}`, "--redis", `redis://127.0.0.1:${redisPort}`], {
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info" },
      });
      const u = `http://127.0.0.1:${apiPort}`;
      await waitFor("moq-api", async () => (await fetch(`${u}/origin/bench-probe`)).status === 404, 15_000, api.output);
      return u;
    } catch (e) {
      // Started but not ready: stop what runs before giving up.
      await api?.stop();
      await redis.stop();
      rmSync(redisDir, { recursive: true, force: true });
      throw e;
    }
  })();
  return {
    kind: "moq-api + redis",
    url,
    redisPort,
    pids: () => [redis.child.pid, api.child.pid],
    async redis(args) {
      return redisCommand(redisPort, args);
    },
    async stop() {
      await api.stop();
      await redis.stop();
      rmSync(redisDir, { recursive: true, force: true });
    },
  };
}

/** One RESP command over a fresh connection; returns the raw reply. */
export function redisCommand(port, args) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    let buf = "";
    sock.setTimeout(5000, () => sock.destroy(new Error("redis timeout")));
    sock.on("error", reject);
    sock.on("data", (d) => {
      buf += d;
      // Good enough for PING / INFO / DBSIZE: wait until a full bulk string or line arrived.
      const m = /^\$(\d+)\r\n/.exec(buf);
      if (m ? buf.length >= m[0].length + Number(m[1]) + 2 : buf.endsWith("\r\n")) {
        sock.end();
        resolve(m ? buf.slice(m[0].length, m[0].length + Number(m[1])) : buf);
      }
    });
    sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`);
  });
}

/** Admin + relay setup on a moq-worker: mints a relay token. */
export async function relayToken(url, relayUrl) {
  const res = await fetch(`${url}/moqworker.v1.AdminService/CreateRelayToken`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${DEV_ADMIN_TOKEN}` },
    body: JSON.stringify({ relayUrl }),
  });
  if (!res.ok) throw new Error(`CreateRelayToken: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

/** One Connect JSON call to the CoordinatorService; returns {status, json}. */
export async function coordinatorCall(url, token, method, body, headers = {}) {
  const res = await fetch(`${url}/moqworker.v1.CoordinatorService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}
