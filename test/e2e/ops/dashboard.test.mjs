// The dashboard at / in headless Chromium against a real `wrangler dev`
// Worker: sign in with the admin token, then watch namespaces that relays
// register (through the RPCs) appear and go without reloading.
// Chromium comes from Debian (scripts/ci-deps.sh), driven by playwright-core.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium } from "playwright-core";
import { call, DEV_ADMIN_TOKEN, ns, ROOT, relay, worker } from "./helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "test", "artifacts");

let w;
let context;
let profile;
before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/ci-deps.sh (apt-get install chromium)`);
  w = await worker({ LEASE_TTL_MS: "60000" });
  profile = mkdtempSync(join(tmpdir(), "moq-worker-chromium-"));
  // A persistent context is how playwright takes an explicit, fresh --user-data-dir.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});
after(async () => {
  await context?.close();
  await w?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe("dashboard", () => {
  it("asks for the admin token, refuses a wrong one, and remembers the right one for the tab", async () => {
    const page = await context.newPage();
    await page.goto(w.url);
    await page.locator("#login").waitFor({ state: "visible" });
    assert.equal(await page.locator("#app").isVisible(), false);
    await page.fill("#token", "not-the-token");
    await page.click("#login button[type=submit]");
    await page.locator("#login-error", { hasText: "admin token rejected" }).waitFor();
    assert.equal(await page.locator("#app").isVisible(), false);

    await page.fill("#token", DEV_ADMIN_TOKEN);
    await page.click("#login button[type=submit]");
    await page.locator("#status", { hasText: "live" }).waitFor();
    await page.reload();
    await page.locator("#status", { hasText: "live" }).waitFor();
    assert.equal(await page.locator("#login").isVisible(), false);
    await page.close();
  });

  it("shows scopes, relays with liveness, and a scope's namespaces and tracks, updating live", async () => {
    const problems = [];
    const page = await context.newPage();
    page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
    page.on("pageerror", (e) => problems.push(String(e)));

    const scope = "tenant-demo";
    await call(
      w.url,
      "AdminService",
      "PutScopeConfig",
      { scope, config: { lingeringSubscribe: true, rendezvousTimeoutMs: 5000 } },
      DEV_ADMIN_TOKEN,
    );
    await call(
      w.url,
      "AdminService",
      "PutPath",
      { path: "/tenant-demo/publish", scope, permissions: "PERMISSIONS_READ_WRITE" },
      DEV_ADMIN_TOKEN,
    );
    const a = await relay(w.url, "https://relay-eu.example.com/", "2026-11-25T10:00Z", "moqt-18");
    const b = await relay(w.url, "https://relay-us.example.com/", "2026-11-25T09:12Z", "moqt-16");
    await a.heartbeat(["192.0.2.10:4443"]);
    await b.heartbeat(["192.0.2.11:4443"]);
    await a.call("RegisterNamespace", { scope, namespace: ns("sports/football/match-42") });
    await a.call("RegisterTrack", { scope, namespace: ns("sports/football/match-42"), track: "video-1080p" });
    await b.call("SubscribeNamespace", { scope, prefix: ns("sports") });

    // The token is per tab unless remembered: this new tab signs in again.
    await page.goto(`${w.url}/#scope=${scope}`);
    await page.fill("#token", DEV_ADMIN_TOKEN);
    await page.click("#login button[type=submit]");

    await page.locator("#scopes button", { hasText: scope }).waitFor();
    await page.locator("#namespaces td", { hasText: "sports/football/match-42" }).waitFor();
    await page.locator("#tracks td", { hasText: "video-1080p" }).waitFor();
    await page.locator("#namespace-subscriptions td", { hasText: "https://relay-us.example.com/" }).waitFor();
    await page.locator("#paths td", { hasText: "/tenant-demo/publish" }).waitFor();
    assert.equal(await page.locator("#cfg-lingering").textContent(), "yes");
    assert.equal(await page.locator("#cfg-timeout").textContent(), "5000 ms");
    assert.equal(await page.locator("#cfg-watchers").textContent(), "0");

    const relayRow = (url) => page.locator("#relays tr", { hasText: url });
    await relayRow("https://relay-eu.example.com/").locator(".pill", { hasText: "alive" }).waitFor();
    await relayRow("https://relay-us.example.com/").locator(".pill", { hasText: "alive" }).waitFor();
    // Each relay's MoQT draft, as it said it (relays of different drafts are never routed to each other).
    await relayRow("https://relay-eu.example.com/").locator("td", { hasText: "moqt-18" }).waitFor();
    await relayRow("https://relay-us.example.com/").locator("td", { hasText: "moqt-16" }).waitFor();

    // Live: registered after the page loaded, shown without a reload.
    await a.call("RegisterNamespace", { scope, namespace: ns("sports/tennis/final") });
    await b.call("RegisterNamespace", { scope, namespace: ns("news/live") });
    await page.locator("#namespaces td", { hasText: "sports/tennis/final" }).waitFor({ timeout: 10_000 });
    await page.locator("#namespaces td", { hasText: "news/live" }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("#namespaces tr").count(), 3);

    // A relay that shuts down is shown as down, and its namespaces go.
    await b.call("Shutdown");
    await relayRow("https://relay-us.example.com/").locator(".pill", { hasText: "down" }).waitFor({ timeout: 10_000 });
    await page.locator("#namespaces td", { hasText: "news/live" }).waitFor({ state: "detached", timeout: 10_000 });

    // A name with markup is shown as text, never run.
    await a.call("RegisterNamespace", { scope, namespace: ns("<img src=x onerror=alert(1)>") });
    await page.locator("#namespaces td", { hasText: "<img src=x onerror=alert(1)>" }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("#namespaces img").count(), 0);

    // Namespaces look as the CLI shows them (one formatting module): bytes that are not UTF-8 in hex.
    await a.call("RegisterNamespace", {
      scope,
      namespace: { fields: [Buffer.from("raw").toString("base64"), Buffer.from([0xff, 0x00]).toString("base64")] },
    });
    await page.locator("#namespaces td", { hasText: "raw/0xff00" }).waitFor({ timeout: 10_000 });

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    assert.deepEqual(problems, []);
    await page.close();
  });

  it("shows a scope's token policy: whether tokens are required, its public keys, never a private one", async () => {
    const page = await context.newPage();
    const scope = "tenant-tokens";
    const { key } = await call(w.url, "AdminService", "RotateScopeKey", { scope }, DEV_ADMIN_TOKEN);
    await call(
      w.url,
      "AdminService",
      "PutScopeConfig",
      { scope, config: { auth: { issuers: ["https://issuer.example"] } } },
      DEV_ADMIN_TOKEN,
    );
    await page.goto(`${w.url}/#scope=${scope}`);
    await page.fill("#token", DEV_ADMIN_TOKEN);
    await page.click("#login button[type=submit]");
    await page.locator("#cfg-tokens", { hasText: "required" }).waitFor();
    const row = page.locator("#policy-keys tr", { hasText: key.kid });
    await row.locator("td", { hasText: "Worker" }).waitFor();
    await row.locator("td", { hasText: "yes" }).waitFor();
    await page.locator("#policy-terms", { hasText: "issuers https://issuer.example" }).waitFor();
    // Just turned on: the note on relays that had admitted the scope without tokens.
    await page.locator("#policy-opening", { hasText: "admit again in" }).waitFor();
    assert.doesNotMatch(await page.content(), /PRIVATE KEY/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.locator("#scope").screenshot({ path: join(ARTIFACTS, "dashboard-token-policy.png") });
    // Turned off: no policy shown.
    await call(w.url, "AdminService", "PutScopeConfig", { scope, config: {} }, DEV_ADMIN_TOKEN);
    await page.locator("#cfg-tokens", { hasText: "not required" }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("#policy").isVisible(), false);
    await page.close();
  });

  it("polls each list with one request (one directory read each), however many relays there are", async () => {
    const page = await context.newPage();
    const calls = [];
    page.on("request", (r) => {
      const m = /AdminService\/(List\w+)$/.exec(r.url());
      if (m) calls.push({ method: m[1], body: JSON.parse(r.postData() || "{}") });
    });
    for (let i = 0; i < 3; i++) await (await relay(w.url, `https://relay-poll-${i}.example.com/`, "e")).heartbeat(["192.0.2.20:4443"]);
    await page.goto(w.url);
    await page.fill("#token", DEV_ADMIN_TOKEN);
    await page.click("#login button[type=submit]");
    await page.locator("#relays td", { hasText: "https://relay-poll-2.example.com/" }).waitFor();
    // Two polls: each asks once per list, for one large page.
    await page.waitForTimeout(2500);
    const relays = calls.filter((c) => c.method === "ListRelays");
    const scopes = calls.filter((c) => c.method === "ListScopes");
    assert.ok(relays.length >= 1 && relays.length === scopes.length, JSON.stringify(calls));
    assert.ok(
      relays.every((c) => c.body.pageSize === 1000 && !c.body.pageToken),
      JSON.stringify(relays),
    );
    // Everything fits on the page: the count says nothing is hidden.
    assert.doesNotMatch(await page.locator("#relay-count").textContent(), /shown/);
    await page.close();
  });
});
