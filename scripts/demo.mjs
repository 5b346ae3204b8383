#!/usr/bin/env node
// `npm run demo`: a whole relay network on 127.0.0.1 in one command.
//
// Starts the Worker, maps two scopes' paths, mints relay tokens through the
// admin API, starts three moq-worker-edge relays, a moq-clock-ietf publisher
// per scope on one relay and subscribers on the others, prints what it
// started, and runs until Ctrl-C; then it stops every process it started
// (each in its own process group) and removes its state.
//
//   npm run demo [-- --port 8787] [-- --lease-ttl-ms 3000]
//   npm run demo -- add-relay [--name d]                (from a second terminal)
//   npm run demo -- add-subscriber <scope> [--relay a]  (from a second terminal)
//
// The second-terminal commands ask the running demo, over a control server on
// 127.0.0.1 whose address is in .demo/state.json, to start the process: the
// demo owns it, so Ctrl-C stops it too.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { ns } from "../test/e2e/lib/rpc.mjs";
import { Stack } from "../test/e2e/network/harness.mjs";
import { DEV_ADMIN_TOKEN, ROOT } from "../test/e2e/lib/worker.mjs";

/** Where the running demo says how to reach it (MOQ_DEMO_STATE moves it, e.g. for tests). */
export const STATE_FILE = process.env.MOQ_DEMO_STATE ?? join(ROOT, ".demo", "state.json");
/**
 * The two tenants: each publishes the clock on its home relay; the others
 * subscribe. acme admits only sessions with a token the Worker issued (its
 * publisher may publish acme/clock, its viewers watch it); globex is open.
 */
export const SCOPES = [
  { scope: "acme", home: "a", namespace: "acme/clock", tokens: true },
  { scope: "globex", home: "b", namespace: "globex/clock", tokens: false },
];
/** Demo tokens live a day (a viewer keeps watching past its token's expiry; new ones get new tokens). */
const DEMO_TOKEN_SECONDS = 86_400;
const RELAYS = ["a", "b", "c"];
const pub = (scope) => `/${scope}/pub`;
const watch = (scope) => `/${scope}/watch`;

/**
 * The demo network; resolves once media flows at every subscriber.
 * @param {{ port?: number, leaseTtlMs?: number, log?: (line: string) => void }} o
 */
export async function startDemo({ port = 8787, leaseTtlMs = 3000, log = console.log } = {}) {
  log("checking moq-clock-ietf (scripts/e2e-deps.sh) …");
  execFileSync("bash", [join(ROOT, "scripts", "e2e-deps.sh")], { stdio: ["ignore", "ignore", "inherit"] });
  log("building moq-worker-edge and starting the Worker …");
  // port 0 = any free port (tests); LEASE_TTL_MS short so a stopped relay shows as down within seconds.
  const stack = await Stack.start({ name: "demo", port: port || undefined, vars: { LEASE_TTL_MS: String(leaseTtlMs) } });
  const demo = new Demo(stack);
  try {
    for (const { scope, tokens } of SCOPES) {
      await stack.admin("PutPath", { path: pub(scope), scope, permissions: "PERMISSIONS_READ_WRITE" });
      await stack.admin("PutPath", { path: watch(scope), scope, permissions: "PERMISSIONS_READ_ONLY" });
      // A signing key held by the Worker turns the scope's token policy on.
      if (tokens) await stack.admin("RotateScopeKey", { scope });
    }
    for (const name of RELAYS) await demo.addRelay(name);
    for (const { scope, home, namespace } of SCOPES) {
      const token = await demo.token(scope, "TOKEN_GRANT_PUBLISH");
      demo.publishers.push({
        scope,
        relay: home,
        proc: stack.publish(demo.relay(home), pub(scope), { namespace, name: `pub-${scope}`, token }),
      });
    }
    await Promise.all(SCOPES.flatMap(({ scope, home }) => RELAYS.filter((r) => r !== home).map((r) => demo.addSubscriber(scope, r))));
  } catch (e) {
    await demo.stop();
    throw e;
  }
  return demo;
}

class Demo {
  constructor(stack) {
    this.stack = stack;
    this.publishers = [];
    this.subscribers = [];
  }

  relay(name) {
    const relay = this.stack.relays.find((r) => r.name === name && r.proc.running);
    if (!relay) throw new Error(`no running relay named ${JSON.stringify(name)}`);
    return relay;
  }

  /** A relay serving every scope (an unscoped token), on a free UDP port. */
  async addRelay(name) {
    name ??= String.fromCharCode(97 + this.stack.relays.length);
    if (!/^[a-z0-9-]{1,20}$/.test(name)) throw new Error("a relay name is 1-20 of a-z, 0-9, -");
    if (this.stack.relays.some((r) => r.name === name && r.proc.running)) throw new Error(`relay ${name} already runs`);
    const relay = await this.stack.relay(name);
    return { name, url: relay.url };
  }

  /** A token for the tenant's clock (AdminService.IssueToken), if the tenant requires one. */
  async token(scope, grant) {
    const tenant = SCOPES.find((s) => s.scope === scope);
    if (!tenant?.tokens) return undefined;
    const namespacePrefix = ns(tenant.namespace);
    return (await this.stack.admin("IssueToken", { scope, grants: [grant], namespacePrefix, ttlSeconds: DEMO_TOKEN_SECONDS })).token;
  }

  /** A clock subscriber of `scope` on relay `name`; resolves once it printed a clock value. */
  async addSubscriber(scope, name) {
    const tenant = SCOPES.find((s) => s.scope === scope);
    if (!tenant) throw new Error(`scope is one of ${SCOPES.map((s) => s.scope).join(", ")}`);
    const relay = this.relay(name ?? RELAYS.find((r) => r !== tenant.home));
    const { sub } = await this.stack.subscribeUntilReceived(relay, watch(scope), {
      namespace: tenant.namespace,
      track: "now",
      token: await this.token(scope, "TOKEN_GRANT_SUBSCRIBE"),
      timeoutMs: 60_000,
    });
    this.subscribers.push({ scope, relay: relay.name, sub });
    return { scope, relay: relay.name, url: relay.url + watch(scope) };
  }

  /** What runs now: for the second-terminal commands and the tests. */
  state() {
    const s = this.stack;
    return {
      worker: s.url,
      workerPids: s.worker.pids(),
      relays: s.relays.map((r) => ({ name: r.name, url: r.url, port: r.port, pid: r.proc.pid, running: r.proc.running })),
      publishers: this.publishers.map((p) => ({ scope: p.scope, relay: p.relay, pid: p.proc.pid, running: p.proc.running })),
      subscribers: this.subscribers.map((x) => ({ scope: x.scope, relay: x.relay, pid: x.sub.proc.pid, received: x.sub.lines.length })),
      pids: s.procs.map((p) => p.pid),
    };
  }

  describe() {
    const s = this.stack;
    return [
      `Worker      ${s.url}   (admin token: ${DEV_ADMIN_TOKEN})`,
      `Dashboard   ${s.url}/#network   (sign in with ${DEV_ADMIN_TOKEN})`,
      ...s.relays.filter((r) => r.proc.running).map((r) => `relay ${r.name}     ${r.url}`),
      ...SCOPES.map(({ scope, home, namespace, tokens }) => {
        const where = this.subscribers
          .filter((x) => x.scope === scope)
          .map((x) => x.relay)
          .sort();
        const admission = tokens ? `tokens required (npx moq-worker token issue ${scope} --subscribe --namespace ${namespace})` : "open";
        return `scope ${scope.padEnd(7)} publish ${namespace} at relay ${home} ${pub(scope)}; subscribers on ${where.join(", ")} at ${watch(scope)}; ${admission}`;
      }),
    ].join("\n");
  }

  /** Every process the demo started, stopped; its state removed. */
  async stop() {
    await this.control?.close();
    await this.stack.close();
  }
}

/** The control server for the second-terminal commands: POST /add-relay, /add-subscriber (JSON); GET /state. */
function serveControl(demo) {
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    try {
      const args = body ? JSON.parse(body) : {};
      let out;
      if (req.method === "GET" && req.url === "/state") out = demo.state();
      else if (req.method === "POST" && req.url === "/add-relay") out = await demo.addRelay(args.name);
      else if (req.method === "POST" && req.url === "/add-subscriber") out = await demo.addSubscriber(args.scope, args.relay);
      else throw new Error(`unknown command ${req.method} ${req.url}`);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out));
    } catch (e) {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: e.message }));
    }
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) }),
    ),
  );
}

async function command(path, body) {
  let state;
  try {
    state = JSON.parse(readFileSync(STATE_FILE, "utf8"));
  } catch {
    throw new Error(`no demo is running (${STATE_FILE} not found): start one with npm run demo`);
  }
  const res = await fetch(state.control + path, { method: "POST", body: JSON.stringify(body) });
  const out = await res.json();
  if (!res.ok) throw new Error(out.error);
  return out;
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      port: { type: "string", default: "8787" },
      "lease-ttl-ms": { type: "string", default: "3000" },
      name: { type: "string" },
      relay: { type: "string" },
    },
  });
  const [cmd, arg] = positionals;
  if (cmd === "add-relay") {
    const r = await command("/add-relay", { name: values.name });
    console.log(`relay ${r.name} started at ${r.url}`);
    return;
  }
  if (cmd === "add-subscriber") {
    const s = await command("/add-subscriber", { scope: arg, relay: values.relay });
    console.log(`subscriber of ${s.scope} on relay ${s.relay} (${s.url}) receives the clock`);
    return;
  }
  if (cmd !== undefined) throw new Error(`unknown command ${cmd}: use add-relay or add-subscriber`);

  const demo = await startDemo({ port: Number(values.port), leaseTtlMs: Number(values["lease-ttl-ms"]) });
  demo.control = await serveControl(demo);
  mkdirSync(dirname(STATE_FILE), { recursive: true });
  writeFileSync(STATE_FILE, JSON.stringify({ control: demo.control.url, worker: demo.stack.url, pid: process.pid }));
  // The harness kills every group on a signal; the demo stops them gracefully (relays send Shutdown) first.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.removeAllListeners(sig);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log("\nstopping every process the demo started …");
    rmSync(STATE_FILE, { force: true });
    await demo.stop();
    console.log("stopped.");
    process.exit(0);
  };
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, stop);
  console.log(`\nThe demo network is up:\n${demo.describe()}\n`);
  console.log("From another terminal:  npm run demo -- add-relay   |   npm run demo -- add-subscriber acme --relay c");
  console.log("Ctrl-C stops everything.");
  // Media keeps flowing; say so now and then.
  setInterval(() => {
    const counts = demo.subscribers.map((s) => `${s.scope}@${s.relay}:${s.sub.lines.length}`).join(" ");
    console.log(`clock values received: ${counts}`);
  }, 30_000).unref();
  await new Promise(() => {});
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(`demo: ${e.message}`);
    process.exit(1);
  });
}
