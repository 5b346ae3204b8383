// The `moq-worker` CLI against a real `wrangler dev` Worker.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { call, cli, DEV_ADMIN_TOKEN, freePort, ns, relay, worker } from "./helpers.mjs";

let w;
let admin; // runs the CLI against this test's Worker
before(async () => {
  w = await worker({ LEASE_TTL_MS: "60000" });
  admin = (args, env = {}) => cli(["--url", w.url, ...args], { env });
});
after(() => w?.stop());

const unique = (name) => `${name}-${Math.random().toString(36).slice(2, 8)}`;

/** A failed command: exit status non-zero, one line on stderr, nothing on stdout. */
function assertOneLineError(res, ...needles) {
  assert.notEqual(res.code, 0, `expected failure, got ${JSON.stringify(res)}`);
  assert.equal(res.stdout, "");
  const lines = res.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line expected: ${res.stderr}`);
  for (const n of needles) assert.match(lines[0], n);
}

describe("moq-worker CLI", () => {
  it("runs as `npx moq-worker` from the repository and documents its defaults", async () => {
    const res = await cli(["--help"], { command: ["npx", "--no-install", "moq-worker"] });
    assert.equal(res.code, 0, res.stderr);
    for (const word of [
      "token",
      "scope",
      "path",
      "relays",
      "--json",
      "http://127.0.0.1:8787",
      "MOQ_WORKER_URL",
      "MOQ_WORKER_ADMIN_TOKEN",
    ]) {
      assert.ok(res.stdout.includes(word), `help mentions ${word}`);
    }
  });

  it("token create mints a token the coordinator accepts as that relay", async () => {
    const res = await admin(["token", "create", "https://relay-cli.example.com"]);
    assert.equal(res.code, 0, res.stderr);
    const token = res.stdout.trim();
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const beat = await call(w.url, "CoordinatorService", "Heartbeat", { epoch: "cli-epoch" }, token, { "moq-relay-versions": "moqt-18" });
    assert.ok(beat.leaseTtlMs > 0);
    const relays = JSON.parse((await admin(["--json", "relays"])).stdout).relays;
    const me = relays.find((r) => r.url === "https://relay-cli.example.com/");
    assert.equal(me?.epoch, "cli-epoch");
    assert.equal(me?.alive, true);
    assert.deepEqual(me?.moqtVersions, ["moqt-18"]);
    const row = (await admin(["relays"])).stdout.split("\n").find((l) => l.includes("relay-cli.example.com"));
    assert.match(row ?? "", /\syes\s+moqt-18\s+cli-epoch\s/, "the relays table shows its MoQT version");

    const json = JSON.parse((await admin(["--json", "token", "create", "https://relay-cli.example.com", "--ttl", "60"])).stdout);
    assert.ok(Number(json.expiresAtMs) > Date.now());
    assertOneLineError(await admin(["token", "create", "ftp://relay"]), /invalid_argument/, /relay_url/);
  });

  it("token revoke refuses the relay's tokens and removes its rows; a new token works", async () => {
    const scope = unique("cli-revoke");
    const url = "https://relay-revoked.example.com";
    const token = (await admin(["token", "create", url])).stdout.trim();
    const body = { scope, namespace: { fields: [btoa("live")] } };
    await call(w.url, "CoordinatorService", "RegisterNamespace", body, token);
    const res = await admin(["--json", "token", "revoke", url]);
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    assert.equal(out.rowsRemoved, "1");
    assert.equal(out.purgePending, false);
    await assert.rejects(call(w.url, "CoordinatorService", "Lookup", body, token), { code: "unauthenticated" });
    const again = (await admin(["token", "create", url])).stdout.trim();
    await assert.rejects(call(w.url, "CoordinatorService", "Lookup", body, again), { code: "not_found" });
    assert.match((await admin(["token", "revoke", url])).stdout, /^revoked tokens made up to \S+; 0 rows removed\n$/);
    assertOneLineError(await admin(["token", "revoke", "not-a-url"]), /invalid_argument/, /relay_url/);
  });

  it("token create --scope/--read-only mints a token limited to those scopes and to reading", async () => {
    const [mine, other] = [unique("cli-limited"), unique("cli-other")];
    const res = await admin(["token", "create", "https://relay-limited.example.com", "--scope", mine, "--read-only"]);
    assert.equal(res.code, 0, res.stderr);
    const token = res.stdout.trim();
    const body = (scope) => ({ scope, namespace: { fields: [btoa("live")] } });
    await assert.rejects(call(w.url, "CoordinatorService", "RegisterNamespace", body(mine), token), { code: "permission_denied" });
    await assert.rejects(call(w.url, "CoordinatorService", "Lookup", body(other), token), { code: "permission_denied" });
    await assert.rejects(call(w.url, "CoordinatorService", "Lookup", body(mine), token), { code: "not_found" });
  });

  it("scope set configures what scope show and GetScopeConfig report", async () => {
    const scope = unique("cli-scope");
    const set = await admin([
      "scope",
      "set",
      scope,
      "--origin-fallback",
      "https://origin.example.com",
      "--lingering",
      "--rendezvous-timeout",
      "2500",
    ]);
    assert.equal(set.code, 0, set.stderr);
    const shown = await admin(["scope", "show", scope]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /origin fallback\s+https:\/\/origin\.example\.com\//);
    assert.match(shown.stdout, /lingering subscribe\s+yes/);
    assert.match(shown.stdout, /rendezvous timeout\s+2500 ms/);
    assert.match(shown.stdout, /watch sockets\s+0/);
    const r = await relay(w.url, "https://relay-cfg.example.com/");
    const { config } = await r.call("GetScopeConfig", { scope });
    assert.deepEqual(config, { originFallback: "https://origin.example.com/", lingeringSubscribe: true, rendezvousTimeoutMs: 2500 });
    // Setting again replaces the whole config.
    await admin(["scope", "set", scope]);
    assert.deepEqual((await r.call("GetScopeConfig", { scope })).config, {});

    assertOneLineError(await admin(["scope", "set", scope, "--rendezvous-timeout", "soon"]), /rendezvous-timeout/);
    assertOneLineError(
      await admin(["scope", "set", scope, "--origin-fallback", "not a url"]),
      /invalid_argument/,
      /config\.origin_fallback/,
    );
    assertOneLineError(await admin(["scope", "show", unique("never-seen")]), /not_found/, /scope/);
    assertOneLineError(await admin(["scope", "show"]), /--unscoped/);
  });

  it("token policy: rotate-key turns it on, token issue signs, keys lists, policy sets an operator's keys, scope set keeps it, remove-key", async () => {
    const scope = unique("cli-tokens");
    assertOneLineError(await admin(["token", "issue", scope, "--subscribe"]), /failed_precondition/, /RotateScopeKey/);
    const rotated = await admin(["scope", "rotate-key", scope]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const kid = /new key (\S+),/.exec(rotated.stdout)?.[1];
    assert.ok(kid, rotated.stdout);

    const issued = await admin(["token", "issue", scope, "--subscribe", "--namespace", "live/cam", "--ttl", "60"]);
    assert.equal(issued.code, 0, issued.stderr);
    assert.match(issued.stdout.trim(), /^1:[A-Za-z0-9_-]+$/, "TYPE:BASE64URL, as moq-clock-ietf --auth-token takes it");
    assert.match(issued.stderr, new RegExp(`signed with ${kid}`));
    assertOneLineError(await admin(["token", "issue", scope]), /--publish, --subscribe/);

    const keys = await admin(["scope", "keys", scope]);
    assert.equal(keys.code, 0, keys.stderr);
    assert.match(keys.stdout, /tokens required/);
    assert.match(keys.stdout, new RegExp(`^${kid}\\s+worker\\s+yes\\s`, "m"));
    assert.doesNotMatch(keys.stdout, /PRIVATE/);

    // An operator's own key, from a PEM file, beside the Worker's.
    const { generateKeyPairSync } = await import("node:crypto");
    const { writeFileSync, mkdtempSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const pemFile = join(mkdtempSync(join(tmpdir(), "cli-pem-")), "byo.pem");
    writeFileSync(pemFile, generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }));
    const policy = await admin(["scope", "policy", scope, "--key", `byo=${pemFile}`, "--issuer", "https://issuer.example"]);
    assert.equal(policy.code, 0, policy.stderr);
    assert.match(policy.stdout, /issuers https:\/\/issuer\.example/);
    assert.match(policy.stdout, /^byo\s+operator\s+no\s/m);
    assertOneLineError(
      await admin(["scope", "policy", scope, "--key", `bad=${process.argv[1]}`]),
      /invalid_argument/,
      /config\.auth\.keys\[0\]\.pem/,
    );

    // `scope set` replaces the config but keeps the token policy.
    assert.equal((await admin(["scope", "set", scope, "--lingering"])).code, 0);
    const json = JSON.parse((await admin(["--json", "scope", "keys", scope])).stdout);
    assert.deepEqual(json.auth.keys.map((k) => k.kid).sort(), ["byo", kid].sort());
    assert.deepEqual(json.auth.issuers, ["https://issuer.example"]);

    assert.equal((await admin(["scope", "remove-key", scope, kid])).code, 0);
    assert.doesNotMatch((await admin(["scope", "keys", scope])).stdout, new RegExp(kid));
    assert.equal((await admin(["scope", "policy", scope, "--off"])).code, 0);
    assert.match((await admin(["scope", "keys", scope])).stdout, /no token policy/);
  });

  it("path set maps a path read-only or read-write; path rm unmaps it", async () => {
    const scope = unique("cli-paths");
    const r = await relay(w.url, "https://relay-paths.example.com/");
    const ro = await admin(["path", "set", `/${scope}/watch/`, scope, "--read-only"]);
    assert.equal(ro.code, 0, ro.stderr);
    assert.match(ro.stdout, new RegExp(`path /${scope}/watch -> scope ${scope} \\(read-only\\)`));
    assert.deepEqual((await r.call("ResolveScope", { connectionPath: `/${scope}/watch` })).scope, {
      scopeId: scope,
      permissions: "PERMISSIONS_READ_ONLY",
    });
    assert.equal((await admin(["path", "set", `/${scope}/pub`, scope, "--read-write"])).code, 0);
    assert.equal((await r.call("ResolveScope", { connectionPath: `/${scope}/pub` })).scope.permissions, "PERMISSIONS_READ_WRITE");

    const json = JSON.parse((await admin(["--json", "scope", "show", scope])).stdout);
    assert.deepEqual(json.paths, [
      { path: `/${scope}/pub`, permissions: "PERMISSIONS_READ_WRITE" },
      { path: `/${scope}/watch`, permissions: "PERMISSIONS_READ_ONLY" },
    ]);

    assert.equal((await admin(["path", "rm", `/${scope}/watch`])).code, 0);
    await assert.rejects(r.call("ResolveScope", { connectionPath: `/${scope}/watch` }), { code: "not_found" });
    assertOneLineError(await admin(["path", "rm", `/${scope}/watch`]), /not_found/, /path/);
    assertOneLineError(await admin(["path", "set", `/${scope}/x`, scope]), /--read-only or --read-write/);
    const both = await admin(["path", "set", `/${scope}/x`, scope, "--read-only", "--read-write"]);
    assert.notEqual(both.code, 0);
    assertOneLineError(await admin(["path", "set", "relative", scope, "--read-only"]), /invalid_argument/, /path/);
  });

  it("scope show and relays list what relays registered, across pages", async () => {
    const scope = unique("cli-show");
    const a = await relay(w.url, "https://relay-a.cli.example.com/");
    const b = await relay(w.url, "https://relay-b.cli.example.com/");
    await a.heartbeat(["127.0.0.1:4443"]);
    for (const n of ["live/one", "live/two", "live/three"]) await a.call("RegisterNamespace", { scope, namespace: ns(n) });
    await a.call("RegisterTrack", { scope, namespace: ns("live/one"), track: "video" });
    await b.call("SubscribeNamespace", { scope, prefix: ns("live") });

    const shown = await admin(["scope", "show", scope, "--page-size", "1"]);
    assert.equal(shown.code, 0, shown.stderr);
    for (const n of ["live/one", "live/two", "live/three"]) {
      assert.match(shown.stdout, new RegExp(`^  ${n}\\s+https://relay-a\\.cli\\.example\\.com/\\s+\\d+s$`, "m"));
    }
    assert.match(shown.stdout, /^namespaces \(3\)$/m);
    assert.match(shown.stdout, /^ {2}live\/one\s+video\s+https:\/\/relay-a\.cli\.example\.com\//m);
    assert.match(shown.stdout, /^ {2}live\s+https:\/\/relay-b\.cli\.example\.com\//m);

    const json = JSON.parse((await admin(["--json", "scope", "show", scope, "--page-size", "2"])).stdout);
    assert.equal(json.namespaces.length, 3);
    assert.equal(json.nextPageToken, "");

    // Relays are listed by the directory, told in the background: allow it a moment.
    let table = "";
    for (let i = 0; i < 50 && !table.includes("relay-b.cli"); i++) {
      table = (await admin(["relays", "--page-size", "1"])).stdout;
      if (!table.includes("relay-b.cli")) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(table, /^URL\s+ALIVE\s+MOQT\s+EPOCH\s+LEASE\s+HEARTBEAT\s+ADDRS\s+SCOPES$/m);
    assert.match(
      table,
      new RegExp(
        // The lease as the directory lists it: its expiry moves in 5-minute steps.
        `^https://relay-a\\.cli\\.example\\.com/\\s+yes\\s+-\\s+boot-1\\s+in (\\d+m)?\\d+s\\s+\\d+s ago\\s+127\\.0\\.0\\.1:4443\\s+${scope}$`,
        "m",
      ),
    );
    assert.match(
      table,
      new RegExp(`^https://relay-b\\.cli\\.example\\.com/\\s+yes\\s+-\\s+-\\s+in (\\d+m)?\\d+s\\s+-\\s+-\\s+${scope}$`, "m"),
    );

    const scopes = await admin(["scopes", "--page-size", "1"]);
    assert.match(scopes.stdout, new RegExp(`^${scope}$`, "m"));
    assert.ok(JSON.parse((await admin(["--json", "scope", "ls"])).stdout).scopes.includes(scope));
  });

  it("takes --url and --token from MOQ_WORKER_URL and MOQ_WORKER_ADMIN_TOKEN; flags win", async () => {
    const env = { MOQ_WORKER_URL: w.url, MOQ_WORKER_ADMIN_TOKEN: DEV_ADMIN_TOKEN };
    assert.equal((await cli(["scopes"], { env })).code, 0);
    assertOneLineError(await cli(["scopes"], { env: { ...env, MOQ_WORKER_ADMIN_TOKEN: "wrong" } }), /unauthenticated/, /--token/);
    assert.equal((await cli(["--token", DEV_ADMIN_TOKEN, "scopes"], { env: { ...env, MOQ_WORKER_ADMIN_TOKEN: "wrong" } })).code, 0);
    const closed = `http://127.0.0.1:${await freePort()}`;
    assertOneLineError(await cli(["--url", closed, "scopes"], { env }), new RegExp(`cannot reach ${closed} \\(ECONNREFUSED\\)`));
    assertOneLineError(await cli(["--url", "not a url", "scopes"]), /--url/);
  });
});
