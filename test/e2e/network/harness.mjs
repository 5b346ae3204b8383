// The relay network on 127.0.0.1 for the network end-to-end tests: a local
// Worker, moq-worker-edge relays over real QUIC, and moq-clock-ietf (a MoQ
// client nobody on this project wrote) as publisher and subscriber.
//
// Every process runs in its own process group (detached) and `Stack.close()`
// stops them all, clients first, then relays, then the Worker. Logs go to one
// file per process in the stack's directory; `Stack.logs()` gives their tails
// for failure messages.
import { execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createSocket } from "node:dgram";
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { stripVTControlCharacters } from "node:util";
import { call, nsText } from "../lib/rpc.mjs";
import { DEV_ADMIN_TOKEN, DEV_TOKEN_SECRET, freePort, ROOT, startWorker } from "../lib/worker.mjs";

export { DEV_TOKEN_SECRET };

const CACHE = join(homedir(), ".cache", "moq-worker");
const CARGO_TARGET_DIR = process.env.CARGO_TARGET_DIR ?? join(CACHE, "target");

/**
 * The MoQT drafts the edge builds for: its cargo features, and the
 * moq-clock-ietf release that speaks the same draft (scripts/e2e-deps.sh
 * installs each). Drafts do not interoperate, so every client a test starts
 * speaks its relay's draft.
 */
export const DRAFTS = {
  "draft-18": { features: [], clock: "0.6.25", relay: "moq-relay-ietf 0.8" },
  "draft-16": { features: ["--no-default-features", "--features", "draft-16"], clock: "0.6.24", relay: "moq-relay-ietf 0.7" },
};
/** The draft a suite's relays are built for unless a test names another (MOQ_DRAFT). */
export const DRAFT = process.env.MOQ_DRAFT ?? "draft-18";
if (!DRAFTS[DRAFT]) throw new Error(`MOQ_DRAFT=${DRAFT}: expected one of ${Object.keys(DRAFTS).join(", ")}`);

/** The moq-clock-ietf binary that speaks `draft`. */
export function clockBin(draft = DRAFT) {
  return join(CACHE, "cargo-bin", `moq-clock-${DRAFTS[draft].clock}`, "bin", "moq-clock-ietf");
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now();

/** Polls `probe` until it returns a truthy value; throws naming `what` after timeoutMs. */
export async function waitFor(what, probe, { timeoutMs, intervalMs = 100 }) {
  const deadline = now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * The edge's line for a session it accepted from `peer` (a relay of the stack:
 * relays dial from their bound socket), optionally at `path` and tagged
 * internal or not. Read from the edge's own log line, whatever the relay version.
 */
export function acceptedFrom(peer, { path, internal } = {}) {
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const p = path === undefined ? '"[^"]*"' : `"${esc(path)}"`;
  const i = internal === undefined ? "(true|false)" : String(internal);
  return new RegExp(`edge: session accepted remote_addr=127\\.0\\.0\\.1:${peer.port} path=${p} internal=${i}\\b`);
}

/** moq-clock-ietf's flag for an issued token ("1:<base64url>", AdminService.IssueToken). */
const tokenArgs = (token) => (token === undefined ? [] : ["--auth-token", token]);

/** `promise`, or an error naming `what` after `ms`. */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A UDP port on 127.0.0.1 that nothing is bound to right now (QUIC listens on UDP). */
export async function freeUdpPort() {
  const socket = createSocket("udp4");
  await new Promise((r) => socket.bind(0, "127.0.0.1", r));
  const { port } = socket.address();
  await new Promise((r) => socket.close(r));
  return port;
}

/** The relay-link path a Worker with `secret` hands out for `scope` (docs: the relay-network contract). */
export function relayLinkPath(scope, secret = DEV_TOKEN_SECRET) {
  const mac = createHmac("sha256", secret).update(`moq-worker relay link v1\0${scope}`).digest().subarray(0, 16);
  return `/_relay/${Buffer.from(scope).toString("base64url")}/${mac.toString("base64url")}`;
}

/**
 * Builds moq-worker-edge and the `announced` example for `draft` from this
 * tree and copies them into `dir`: the cargo target dir is shared with other
 * checkouts and builds, so the copies are what this run tested.
 * MOQ_E2E_BINS (JSON: draft → {edge, announced}, as run.mjs sets it) skips the build.
 */
export function edgeBinaries(dir, draft = DRAFT) {
  const prebuilt = process.env.MOQ_E2E_BINS ? JSON.parse(process.env.MOQ_E2E_BINS)[draft] : undefined;
  if (prebuilt) return prebuilt;
  try {
    execFileSync("cargo", ["build", "--quiet", ...DRAFTS[draft].features, "--bin", "moq-worker-edge", "--example", "announced"], {
      cwd: join(ROOT, "edge"),
      env: { ...process.env, CARGO_TARGET_DIR },
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    throw new Error(`building moq-worker-edge (${draft}) failed:\n${e.stderr ?? e.message}`);
  }
  mkdirSync(join(dir, draft), { recursive: true });
  const edge = join(dir, draft, "moq-worker-edge");
  const announced = join(dir, draft, "announced");
  copyFileSync(join(CARGO_TARGET_DIR, "debug", "moq-worker-edge"), edge);
  copyFileSync(join(CARGO_TARGET_DIR, "debug", "examples", "announced"), announced);
  return { edge, announced };
}

function requireClock(draft) {
  if (!existsSync(clockBin(draft))) {
    throw new Error(`moq-clock-ietf ${DRAFTS[draft].clock} (${draft}) not found at ${clockBin(draft)}: run scripts/e2e-deps.sh`);
  }
}

/** One process in its own process group, output to `<dir>/<name>.log`, stdout lines kept with arrival times. */
class Proc {
  constructor(dir, name, cmd, args, env = {}) {
    this.name = name;
    this.logPath = join(dir, `${name}.log`);
    this.lines = []; // stdout lines: { text, at }
    this.output = ""; // stdout and stderr as read so far (the file lags behind it)
    const log = createWriteStream(this.logPath);
    // NO_COLOR: plain tracing output, which the tests match; no backtraces in error exits.
    this.child = spawn(cmd, args, {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", RUST_BACKTRACE: "0", RUST_LIB_BACKTRACE: "0", ...env },
    });
    this.pid = this.child.pid;
    let partial = "";
    this.child.stdout.on("data", (d) => {
      const at = now();
      log.write(d);
      this.output += d;
      partial += d;
      const parts = partial.split("\n");
      partial = parts.pop();
      for (const text of parts) if (text) this.lines.push({ text, at });
    });
    this.child.stderr.on("data", (d) => {
      log.write(d);
      this.output += d;
    });
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      }),
    );
    this.child.once("error", (e) => log.write(`spawn error: ${e.message}\n`));
  }

  get running() {
    return this.exit === undefined;
  }

  /** Everything it wrote so far (ANSI colour codes removed). */
  log() {
    return stripVTControlCharacters(this.output);
  }

  signal(sig) {
    try {
      process.kill(-this.pid, sig);
    } catch {}
  }

  /** TERM (after CONT, in case it is frozen), then KILL after graceMs. */
  async stop(graceMs = 5000) {
    if (!this.running) return;
    this.signal("SIGCONT");
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
    // The group may outlive its leader.
    this.signal("SIGKILL");
  }
}

/** A moq-clock-ietf subscriber: `lines` are the clock values it printed. */
export class Subscriber {
  constructor(proc) {
    this.proc = proc;
  }
  get lines() {
    return this.proc.lines;
  }
  /** Resolves once `n` lines arrived; throws if it exits first or after timeoutMs. */
  async received(n, timeoutMs) {
    await waitFor(
      `${n} objects at subscriber ${this.proc.name}`,
      () => {
        if (this.lines.length >= n) return true;
        if (!this.proc.running) throw new Error(`subscriber exited (${JSON.stringify(this.proc.exit)}) after ${this.lines.length} objects`);
        return false;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }
}

/**
 * A network under test. `await Stack.start({vars})` starts the Worker; then
 * relays and clients are added with `relay()`, `publish()`, `subscribe()`.
 */
export class Stack {
  static async start({ name = "network", vars = {}, port, keepLogs = process.env.KEEP_LOGS === "1" } = {}) {
    const stack = new Stack(mkdtempSync(join(tmpdir(), `moq-e2e-${name}-`)), keepLogs);
    installExitHandlers(stack);
    try {
      requireClock(DRAFT);
      stack.binaries(DRAFT);
      stack.vars = vars;
      stack.workerPort = port ?? (await freePort());
      await stack.startWorker();
    } catch (e) {
      await stack.close();
      throw e;
    }
    return stack;
  }

  constructor(dir, keepLogs) {
    this.dir = dir;
    this.keepLogs = keepLogs;
    this.state = join(dir, "state");
    mkdirSync(this.state);
    this.procs = [];
    this.relays = [];
    this.counter = 0;
    this.bins = {};
  }

  /** The edge and `announced` binaries for `draft`, built once per stack. */
  binaries(draft) {
    this.bins[draft] ??= edgeBinaries(this.dir, draft);
    return this.bins[draft];
  }

  /** The Worker on its port and state directory (also used to restart it on the same state). */
  async startWorker() {
    this.worker = await startWorker({ port: this.workerPort, persistTo: this.state, vars: this.vars });
    this.url = this.worker.url;
  }

  /** Kills the Worker's whole process group (no graceful shutdown). */
  async killWorker() {
    await this.worker.stop("SIGKILL");
  }

  admin(method, body) {
    return call(this.url, "AdminService", method, body, DEV_ADMIN_TOKEN);
  }

  /** Namespace rows of a scope (undefined = unscoped) as "namespace@relay-host" strings, sorted. */
  async namespaces(scope) {
    const res = await this.admin("DescribeScope", { scope, pageSize: 1000 });
    return (res.namespaces ?? []).map((r) => `${nsText(r.namespace)}@${new URL(r.relay.url).host}`).sort();
  }

  /** Namespace subscription rows of a scope as "prefix@relay-host" strings, sorted. */
  async namespaceSubscriptions(scope) {
    const res = await this.admin("DescribeScope", { scope, pageSize: 1000 });
    return (res.namespaceSubscriptions ?? []).map((r) => `${nsText(r.prefix)}@${new URL(r.relay.url).host}`).sort();
  }

  /**
   * A moq-worker-edge relay on its own UDP port with its own token, built for
   * `draft` (the suite's by default); resolves once it listens. Clients the
   * stack starts on it speak the same draft.
   */
  async relay(name, { scopes, args = [], port, draft = DRAFT } = {}) {
    requireClock(draft);
    port ??= await freeUdpPort();
    const url = `https://127.0.0.1:${port}`;
    const { token } = await this.admin("CreateRelayToken", { relayUrl: url, ...(scopes ? { scopes } : {}) });
    const proc = this.spawn(
      `relay-${name}`,
      this.binaries(draft).edge,
      [
        "--bind",
        `127.0.0.1:${port}`,
        "--public-url",
        url,
        "--coordinator-url",
        this.url,
        "--tls-self-signed",
        "--tls-disable-verify",
        ...args,
      ],
      { MOQ_COORDINATOR_TOKEN: token, RUST_LOG: process.env.RUST_LOG ?? "info,quinn=warn" },
    );
    const relay = { name, port, url, host: `127.0.0.1:${port}`, proc, draft };
    this.relays.push(relay);
    await waitFor(
      `relay ${name} listening`,
      () => {
        if (!proc.running) throw new Error(`relay ${name} exited: ${JSON.stringify(proc.exit)}`);
        return proc.log().includes("edge: relay listening");
      },
      { timeoutMs: 30_000 },
    );
    return relay;
  }

  /**
   * A moq-clock-ietf publisher of `namespace`/`track` at relay URL + path.
   * `clock` = a start date for faketime: the publisher's clock (its payload) then
   * runs from that date, which tells two publishers of one track apart.
   */
  publish(relay, path, { namespace, track = "now", clock, name, token } = {}) {
    const args = [
      "--bind",
      "127.0.0.1:0",
      "--tls-disable-verify",
      ...tokenArgs(token),
      "--publish",
      "--namespace",
      namespace,
      "--track",
      track,
      relay.url + path,
    ];
    name ??= `pub-${relay.name}-${++this.counter}`;
    const bin = clockBin(relay.draft);
    if (!clock) return this.spawn(name, bin, args);
    // Only the wall clock moves: QUIC timers run on the monotonic clock.
    return this.spawn(name, "faketime", [clock, bin, ...args], { FAKETIME_DONT_FAKE_MONOTONIC: "1" });
  }

  /** A moq-clock-ietf subscriber (one attempt: it exits if the SUBSCRIBE is refused); `token`: its --auth-token. */
  subscribe(relay, path, { namespace, track = "now", name, token } = {}) {
    name ??= `sub-${relay.name}-${++this.counter}`;
    return new Subscriber(
      this.spawn(name, clockBin(relay.draft), [
        "--bind",
        "127.0.0.1:0",
        "--tls-disable-verify",
        ...tokenArgs(token),
        "--namespace",
        namespace,
        "--track",
        track,
        relay.url + path,
      ]),
    );
  }

  /**
   * edge/examples/announced: SUBSCRIBE_NAMESPACE for `prefix`, printing
   * "subscribed <prefix>", then "added <ns>" / "removed <ns>" lines.
   */
  announced(relay, path, { prefix, name }) {
    name ??= `announced-${relay.name}-${++this.counter}`;
    return this.spawn(name, this.binaries(relay.draft).announced, ["--tls-disable-verify", "--url", relay.url + path, "--prefix", prefix]);
  }

  /**
   * Subscribes again and again (moq-clock does not retry a refused SUBSCRIBE)
   * until one subscriber receives an object; resolves to { sub, firstAt, attempts }.
   */
  async subscribeUntilReceived(relay, path, { namespace, track, token, timeoutMs, retryMs = 200, stallMs = 8_000 }) {
    const deadline = now() + timeoutMs;
    const failures = [];
    for (let attempt = 1; ; attempt++) {
      const sub = this.subscribe(relay, path, { namespace, track, token });
      const stallAt = now() + stallMs;
      for (;;) {
        if (sub.lines.length > 0) return { sub, firstAt: sub.lines[0].at, attempts: attempt };
        if (!sub.proc.running) break;
        // A client that neither receives nor fails (seen once in CI on draft-16) is
        // replaced, its log kept for the failure message: the deadline still bounds the wait.
        if (now() > stallAt && now() + retryMs < deadline) {
          await sub.proc.stop();
          sub.stalled = true;
          break;
        }
        if (now() > deadline) {
          await sub.proc.stop();
          throw new Error(
            `no object at a subscriber on relay ${relay.name} (${relay.url}${path}, ${namespace}) within ${timeoutMs} ms after ${attempt} attempts; last refusals:\n${failures.slice(-3).join("\n")}`,
          );
        }
        await sleep(20);
      }
      failures.push(
        sub.stalled
          ? `${sub.proc.name}: nothing within ${stallMs} ms, replaced; its log ends: ${lastLines(sub.proc.log(), 5)}`
          : `${sub.proc.name}: exit ${JSON.stringify(sub.proc.exit)}: ${errorLine(sub.proc.log())}`,
      );
      if (now() > deadline) {
        throw new Error(
          `no object at a subscriber on relay ${relay.name} (${relay.url}${path}, ${namespace}) within ${timeoutMs} ms after ${attempt} attempts; last refusals:\n${failures.slice(-3).join("\n")}`,
        );
      }
      await sleep(retryMs);
    }
  }

  spawn(name, cmd, args, env) {
    const proc = new Proc(this.dir, name, cmd, args, env);
    this.procs.push(proc);
    return proc;
  }

  /** The last lines of every relay's log (and the Worker's output), for failure messages. */
  logs(lines = 40) {
    const parts = this.relays.map((r) => `----- relay ${r.name} (${r.url}) last ${lines} lines:\n${lastLines(r.proc.log(), lines)}`);
    parts.push(`----- worker last ${lines} lines:\n${lastLines(this.worker?.output() ?? "", lines)}`);
    return parts.join("\n");
  }

  /** Runs `fn`; on failure adds the relay logs to the error message. */
  async step(fn) {
    try {
      return await fn();
    } catch (e) {
      e.message += `\n${this.logs()}\n(logs: ${this.dir}${this.keepLogs ? "" : "; KEEP_LOGS=1 keeps them"})`;
      this.failed = true;
      throw e;
    }
  }

  /** Stops clients, then relays (they send Shutdown), then the Worker; removes the directory unless kept. */
  async close() {
    const relayProcs = new Set(this.relays.map((r) => r.proc));
    await Promise.all(this.procs.filter((p) => !relayProcs.has(p)).map((p) => p.stop()));
    await Promise.all([...relayProcs].map((p) => p.stop()));
    await this.worker?.stop();
    uninstallExitHandlers(this);
    if (this.keepLogs || this.failed) console.error(`network e2e logs kept in ${this.dir}`);
    else rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort (process exit): KILL every group. */
  killAll() {
    for (const p of this.procs) {
      p.signal("SIGCONT");
      p.signal("SIGKILL");
    }
    // The launcher's first pid leads the Worker's process group.
    const leader = this.worker?.pids()[0];
    if (leader) {
      try {
        process.kill(-leader, "SIGKILL");
      } catch {}
    }
  }
}

/** moq-clock's error exit ("Error: ..."), else its last line. */
const errorLine = (log) => log.split("\n").find((l) => l.startsWith("Error:")) ?? lastLines(log, 1);

export function lastLines(text, n) {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

// Stacks still open when the process is interrupted or exits: their groups are killed.
const open = new Set();
let handlersInstalled = false;
function installExitHandlers(stack) {
  open.add(stack);
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", () => {
    for (const s of open) s.killAll();
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      for (const s of open) s.killAll();
      process.exit(130);
    });
  }
}
function uninstallExitHandlers(stack) {
  open.delete(stack);
}
