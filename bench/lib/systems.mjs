// Starting and stopping the systems under test, all on 127.0.0.1:
//  - moq-worker, through the project's one Worker launcher (test/e2e/lib/worker.mjs):
//    the built bundle (wrangler deploy --dry-run) under Miniflare or bare
//    workerd, or the source under `wrangler dev`;
//  - moq-api (crates.io) with its own redis-server.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import net from "node:net";
import { homedir, tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import {
  buildBundle,
  DEV_ADMIN_TOKEN,
  freePort,
  processTree,
  ROOT,
  spawnLogged,
  startWorker,
  wranglerConfig,
} from "../../test/e2e/lib/worker.mjs";

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

/** Resident memory of processes, MiB, from /proc. */
export function rssMiB(pids) {
  let kib = 0;
  for (const pid of pids) {
    try {
      kib += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    } catch {}
  }
  return +(kib / 1024).toFixed(1);
}

export { buildBundle, freePort, processTree, wranglerConfig };

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

/**
 * The floor Worker (bench/floor/worker.js: one Durable Object RPC per request,
 * nothing else) as a bundle startWorkerd serves, with moq-worker's
 * compatibility date. Plain JS, so nothing is built.
 */
export function floorBundle() {
  const dir = mkdtempSync(join(tmpdir(), "moq-worker-floor-"));
  copyFileSync(join(ROOT, "bench", "floor", "worker.js"), join(dir, "index.js"));
  return {
    dir,
    config: {
      compatibilityDate: wranglerConfig().compatibilityDate,
      durableObjects: { FLOOR: { className: "FloorObject", useSQLite: true } },
      vars: {},
    },
    modules: [{ name: "index.js", type: "ESModule" }],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** moq-worker's built bundle under Miniflare (workerd, no dev proxy); state in a temp dir. */
export const startMiniflare = ({ bundle, inspectorPort, vars }) => startWorker({ mode: "miniflare", bundle, inspectorPort, vars });

/**
 * moq-worker's built bundle on bare workerd (the same binary Miniflare runs),
 * configured directly: no Miniflare entry worker in front of the Worker, the
 * closest local equivalent of how Cloudflare runs it.
 */
export const startWorkerd = ({ bundle, inspectorPort, vars }) => startWorker({ mode: "workerd", bundle, inspectorPort, vars });

/** moq-worker under `wrangler dev` (the dev proxy in front of workerd), from the given source tree. */
export const startWranglerDev = ({ root = ROOT, vars } = {}) => startWorker({ mode: "wrangler", root, vars });

/** moq-api with a private redis-server (no persistence: redis as a cache, as moq-api uses it). */
export async function startMoqApi() {
  if (!existsSync(MOQ_API_BIN)) {
    throw new Error(`moq-api not found at ${MOQ_API_BIN}: run scripts/bench-deps.sh first`);
  }
  const redisPort = await freePort();
  const redisDir = mkdtempSync(join(tmpdir(), "moq-worker-bench-redis-"));
  const redis = spawnLogged("redis-server", [
    "--bind",
    "127.0.0.1",
    "--port",
    String(redisPort),
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    redisDir,
    "--daemonize",
    "no",
    "--protected-mode",
    "yes",
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
