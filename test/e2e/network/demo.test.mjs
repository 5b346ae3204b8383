// network-e2e: once (the demo runs on the default draft-18 build)
// `npm run demo` as a newcomer runs it, and the dashboard's network view in
// headless Chromium: the demo starts three relays in two scopes with clock
// publishers and subscribers, media flows in both scopes (the subscribers'
// output), a second terminal adds a relay, the view shows the relays and the
// links the demo makes, a relay killed meanwhile turns down and its links
// vanish, and Ctrl-C leaves no process and no port behind. Screenshots go to
// test/artifacts/.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { chromium } from "playwright-core";
import { DEV_ADMIN_TOKEN, ROOT } from "../lib/worker.mjs";
import { clockBin, waitFor } from "./harness.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "test", "artifacts");
const DEMO = join(ROOT, "scripts", "demo.mjs");

const dir = mkdtempSync(join(tmpdir(), "moq-demo-test-"));
const env = { ...process.env, MOQ_DEMO_STATE: join(dir, "state.json") };
let demo;
let output = "";
let state;
let context;

const control = async (path) => {
  const { control } = JSON.parse(readFileSync(env.MOQ_DEMO_STATE, "utf8"));
  const res = await fetch(control + path);
  return res.json();
};
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const tcpFree = (port) =>
  new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
const udpFree = (port) =>
  new Promise((resolve) => {
    const s = createSocket("udp4");
    s.once("error", () => resolve(false));
    s.bind(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/ci-deps.sh (apt-get install chromium)`);
  // What `npm run demo` runs, on a free port (8787 may be taken by `npm start`).
  demo = spawn(process.execPath, [DEMO, "--port", "0"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  demo.stdout.on("data", (d) => (output += d));
  demo.stderr.on("data", (d) => (output += d));
  await waitFor(
    "the demo to say it is up",
    () => {
      if (demo.exitCode !== null) throw new Error(`demo exited ${demo.exitCode}:\n${output}`);
      return output.includes("The demo network is up");
    },
    { timeoutMs: 240_000, intervalMs: 200 },
  );
  state = await control("/state");
});

after(async () => {
  await context?.close();
  if (demo && demo.exitCode === null) {
    try {
      process.kill(-demo.pid, "SIGKILL");
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("npm run demo", () => {
  it("prints what it started: the Worker, the dashboard and its token, three relays, both scopes", () => {
    assert.match(output, /Dashboard\s+http:\/\/127\.0\.0\.1:\d+\/#network/);
    assert.ok(output.includes(DEV_ADMIN_TOKEN));
    for (const name of ["a", "b", "c"]) assert.match(output, new RegExp(`relay ${name}\\s+https://127\\.0\\.0\\.1:\\d+`));
    assert.match(output, /scope acme .*subscribers on b, c.*; tokens required \(npx moq-worker token issue acme --subscribe/);
    assert.match(output, /scope globex .*subscribers on a, c.*; open/);
    assert.equal(state.relays.length, 3);
  });

  it("media flows between relays in both scopes (the subscribers print clock values)", async () => {
    await waitFor(
      "three clock values at every subscriber",
      async () => (await control("/state")).subscribers.every((s) => s.received >= 3),
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    const { subscribers, relays } = await control("/state");
    assert.deepEqual(subscribers.map((s) => `${s.scope}@${s.relay}`).sort(), ["acme@b", "acme@c", "globex@a", "globex@c"]);
    // acme's subscribers got tokens from the Worker; without one the relay refuses.
    const b = relays.find((r) => r.name === "b");
    const args = ["--bind", "127.0.0.1:0", "--tls-disable-verify", "--namespace", "acme/clock", "--track", "now", `${b.url}/acme/watch`];
    const refused = await promisify(execFile)(clockBin(), args, { timeout: 20_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e) => ({ code: e.code, stdout: e.stdout ?? "" }),
    );
    assert.notEqual(refused.code, 0, "a tokenless acme viewer is refused");
    assert.equal(refused.stdout.trim(), "", "and receives nothing");
  });

  it("a second terminal adds a relay, and a subscriber on it, with one command each", async () => {
    const run = (...args) => promisify(execFile)(process.execPath, [DEMO, ...args], { cwd: ROOT, env });
    assert.match((await run("add-relay")).stdout, /relay d started at https:\/\/127\.0\.0\.1:\d+/);
    assert.match((await run("add-subscriber", "globex", "--relay", "d")).stdout, /subscriber of globex on relay d .* receives the clock/);
    state = await control("/state");
    assert.equal(state.relays.filter((r) => r.running).length, 4);
    assert.ok(state.subscribers.some((s) => s.scope === "globex" && s.relay === "d" && s.received >= 1));
  });

  it("the network view shows the relays and the demo's links; a killed relay turns down and its links vanish", async () => {
    const url = (name) => `${state.relays.find((r) => r.name === name).url}/`;
    const profile = join(dir, "chromium");
    mkdirSync(ARTIFACTS, { recursive: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1400, height: 1100 },
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-sync"],
    });
    const page = await context.newPage();
    await page.goto(`${state.worker}/#network`);
    await page.fill("#token", DEV_ADMIN_TOKEN);
    await page.click("#login button[type=submit]");

    const node = (name, st) => page.locator(`#net-svg g.node[data-relay="${url(name)}"][data-state="${st}"]`);
    const link = (from, to, scope) =>
      page.locator(`#net-svg path.link[data-from="${url(from)}"][data-to="${url(to)}"][data-scope="${scope}"]`);
    for (const name of ["a", "b", "c", "d"]) await node(name, "alive").waitFor({ timeout: 20_000 });
    // Subscribers of acme on b and c pull from a (acme's publisher); globex's on a, c and d pull from b.
    const links = [
      ["b", "a", "acme"],
      ["c", "a", "acme"],
      ["a", "b", "globex"],
      ["c", "b", "globex"],
      ["d", "b", "globex"],
    ];
    for (const [from, to, scope] of links) await link(from, to, scope).waitFor({ timeout: 20_000 });
    await page.screenshot({ path: join(ARTIFACTS, "network.png"), fullPage: false });

    // The filter shows one scope's links only.
    await page.click('#net-filters button[data-scope="acme"]');
    await link("a", "b", "globex").waitFor({ state: "detached", timeout: 5_000 });
    assert.equal(await link("b", "a", "acme").count(), 1);
    await page.click('#net-filters button[data-scope="*"]');

    // Relay c crashes: down within the lease (3 s) plus the directory's slack, its links gone.
    const c = state.relays.find((r) => r.name === "c");
    process.kill(-c.pid, "SIGKILL");
    await node("c", "down").waitFor({ timeout: 20_000 });
    await page.waitForFunction(
      (cUrl) => ![...document.querySelectorAll("#net-svg path.link")].some((p) => p.dataset.from === cUrl || p.dataset.to === cUrl),
      url("c"),
      { timeout: 20_000 },
    );
    // The others stay.
    await link("b", "a", "acme").waitFor({ timeout: 5_000 });
    await link("a", "b", "globex").waitFor({ timeout: 5_000 });
    await page.screenshot({ path: join(ARTIFACTS, "network-relay-down.png") });
    await context.close();
    context = undefined;
  });

  it("Ctrl-C stops every process it started and frees every port", async () => {
    state = await control("/state");
    const pids = [...state.pids, ...state.workerPids];
    const workerPort = Number(new URL(state.worker).port);
    const relayPorts = state.relays.map((r) => r.port);
    process.kill(demo.pid, "SIGINT");
    const code = await new Promise((resolve) => (demo.exitCode !== null ? resolve(demo.exitCode) : demo.once("exit", resolve)));
    assert.equal(code, 0, output);
    assert.match(output, /stopped\./);
    // Reparented zombies are reaped by init a moment after the demo exits.
    await waitFor("every process the demo started to be gone", () => pids.filter(alive).length === 0, { timeoutMs: 5_000 }).catch(() => {
      assert.deepEqual(pids.filter(alive), [], "processes left behind");
    });
    assert.ok(await tcpFree(workerPort), `the Worker's port ${workerPort} is still taken`);
    for (const port of relayPorts) assert.ok(await udpFree(port), `relay port ${port} is still taken`);
    assert.ok(!existsSync(env.MOQ_DEMO_STATE), "the state file is removed");
  });
});
