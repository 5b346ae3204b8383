// The operator's read views: ListScopes and ListRelays (from the
// DirectoryObject, told in the background) and DescribeScope's paging.
import { describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { Permissions } from "../src/gen/moqworker/v1/coordinator_pb.js";
import type { RelayRecord } from "../src/gen/moqworker/v1/admin_pb.js";
import { DirectoryObject, RELAY_RETENTION_MS, type RelayNote } from "../src/objects/directory.js";
import { DESCRIBE_LISTS, pageQuery, type DescribeList } from "../src/objects/scope-describe.js";
import type { ScopeObject } from "../src/objects/scope.js";
import { scopeObjectName } from "../src/objects/names.js";
import { adminClient, freshScope, ns, relay, text } from "./client.js";

const admin = adminClient();
const uniqueRelay = (name: string) => `https://${name}-${crypto.randomUUID().slice(0, 8)}.example.com/`;

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail");
}

async function allScopes(pageSize: number): Promise<{ scopes: string[]; pages: number }> {
  const scopes: string[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await admin.listScopes({ pageSize, pageToken });
    scopes.push(...page.scopes);
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken !== "");
  return { scopes, pages };
}

async function relayRecord(url: string): Promise<RelayRecord | undefined> {
  let pageToken = "";
  do {
    const page = await admin.listRelays({ pageToken });
    const found = page.relays.find((r) => r.url === url);
    if (found) return found;
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return undefined;
}

describe("ListScopes", () => {
  it("lists a scope as soon as an operator configures it or maps a path to it", async () => {
    const [configured, mapped] = [freshScope("configured"), freshScope("mapped")];
    await admin.putScopeConfig({ scope: configured, config: { lingeringSubscribe: true } });
    await admin.putPath({ path: `/${mapped}/pub`, scope: mapped, permissions: Permissions.READ_WRITE });
    const { scopes } = await allScopes(1000);
    expect(scopes).toContain(configured);
    expect(scopes).toContain(mapped);
  });

  it("lists scopes relays wrote to (told in the background), with '' for the unscoped space", async () => {
    const scope = freshScope("written");
    const r = await relay(uniqueRelay("writer"));
    await r.registerNamespace({ scope, namespace: ns("live") });
    await r.registerNamespace({ namespace: ns("unscoped/live") });
    await expect.poll(async () => (await allScopes(1000)).scopes, { timeout: 5000 }).toEqual(
      expect.arrayContaining([scope, ""]),
    );
  });

  it("pages in name order, each scope once", async () => {
    const mine = Array.from({ length: 5 }, () => freshScope("paged"));
    for (const scope of mine) await admin.putScopeConfig({ scope, config: {} });
    const { scopes, pages } = await allScopes(2);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(new Set(scopes).size).toBe(scopes.length);
    expect([...scopes].sort()).toEqual(scopes);
    expect(scopes).toEqual(expect.arrayContaining(mine));
  });

  it("rejects bad page sizes and tokens, naming the field", async () => {
    const big = await failure(admin.listScopes({ pageSize: 1001 }));
    expect([big.code, big.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining("page_size")]);
    const junk = await failure(admin.listScopes({ pageToken: "not-a-token" }));
    expect([junk.code, junk.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining("page_token")]);
    // A token of another listing is refused too.
    for (let i = 0; i < 2; i++) await admin.putScopeConfig({ scope: freshScope("tok"), config: {} });
    const { nextPageToken } = await admin.listScopes({ pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    const crossed = await failure(admin.listRelays({ pageToken: nextPageToken }));
    expect([crossed.code, crossed.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining("page_token")]);
  });
});

describe("ListRelays", () => {
  it("shows a relay's epoch, lease, addresses and scopes; after Shutdown it is listed as not alive", async () => {
    const url = uniqueRelay("lister");
    const scope = freshScope("relay-view");
    const r = await relay(url, "json", "epoch-1");
    const before = Date.now();
    await r.heartbeat({ epoch: "epoch-1", addrs: ["192.0.2.7:4443"] });
    await r.registerNamespace({ scope, namespace: ns("a/b") });
    await r.subscribeNamespace({ prefix: ns("") });

    // The relay notes its scopes to the directory in the background.
    await expect.poll(async () => (await relayRecord(url))?.scopes, { timeout: 5000 }).toEqual(["", scope]);
    const rec = (await relayRecord(url))!;
    expect(rec.alive).toBe(true);
    expect(rec.epoch).toBe("epoch-1");
    expect(rec.addrs).toEqual(["192.0.2.7:4443"]);
    expect(rec.scopes).toEqual(["", scope]);
    expect(Number(rec.leaseExpiresAtMs)).toBeGreaterThan(Date.now());
    expect(Number(rec.lastHeartbeatAtMs)).toBeGreaterThanOrEqual(before - 1000);

    await r.shutdown({});
    const gone = (await relayRecord(url))!;
    expect(gone.alive).toBe(false);
    expect(gone.scopes).toEqual([]);
    expect(Number(gone.leaseExpiresAtMs)).toBeLessThanOrEqual(Date.now());
  });

  it("follows a restart to a new epoch", async () => {
    const url = uniqueRelay("restarter");
    const first = await relay(url, "binary", "boot-1");
    await first.heartbeat({ epoch: "boot-1" });
    await expect.poll(async () => (await relayRecord(url))?.epoch, { timeout: 5000 }).toBe("boot-1");
    const second = await relay(url, "binary", "boot-2");
    await second.heartbeat({ epoch: "boot-2" });
    await expect.poll(async () => (await relayRecord(url))?.epoch, { timeout: 5000 }).toBe("boot-2");
  });

  it("pages by URL", async () => {
    const urls = Array.from({ length: 3 }, (_, i) => uniqueRelay(`pager${i}`));
    for (const url of urls) await (await relay(url)).heartbeat({ epoch: "e" });
    const seen: string[] = [];
    await expect
      .poll(
        async () => {
          seen.length = 0;
          let pageToken = "";
          do {
            const page = await admin.listRelays({ pageSize: 1, pageToken });
            expect(page.relays.length).toBeLessThanOrEqual(1);
            seen.push(...page.relays.map((r) => r.url));
            pageToken = page.nextPageToken;
          } while (pageToken !== "");
          return seen;
        },
        { timeout: 5000 },
      )
      .toEqual(expect.arrayContaining(urls));
    expect([...seen].sort()).toEqual(seen);
    expect(new Set(seen).size).toBe(seen.length);
    const big = await failure(admin.listRelays({ pageSize: 1001 }));
    expect([big.code, big.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining("page_size")]);
  });
});

/** A RelayObject's note of a relay; `expiresAt` defaults to `at` (a lapsed or left relay). */
const note = (url: string, epoch: string, up: boolean, at: number, expiresAt = at): RelayNote => ({
  url, epoch, up, at, addrs: [], expiresAt, lastBeatAt: null, scopes: [], scopeCount: 0,
});
const TTL_FOR_NOTES = 60_000;

describe("DirectoryObject", () => {
  const stub = () => env.DIRECTORY.get(env.DIRECTORY.idFromName(`directory-test-${crypto.randomUUID()}`));

  it("ignores a note older than the one it holds (notes travel separately)", async () => {
    const d = stub();
    const later = Date.now() + TTL_FOR_NOTES;
    await d.noteRelay(note("https://r.example/", "e2", true, 2000, later));
    await d.noteRelay(note("https://r.example/", "e1", false, 1000, 1000));
    const { relays } = await d.listRelays(10, undefined);
    expect(relays.map((r) => [r.url, r.epoch, r.alive, r.firstSeenAt, r.changedAt])).toEqual([["https://r.example/", "e2", true, 2000, 2000]]);
  });

  it("forgets relays a day after they left, keeps the others", async () => {
    const d = stub();
    const now = Date.now();
    await d.noteRelay(note("https://left-long-ago.example/", "e", false, now - RELAY_RETENTION_MS - 1));
    await d.noteRelay(note("https://left-now.example/", "e", false, now));
    await d.noteRelay(note("https://up.example/", "e", true, now - RELAY_RETENTION_MS - 1, now + TTL_FOR_NOTES));
    // The prune for the first one is due at once: it may already have run by itself.
    await runDurableObjectAlarm(d);
    await expect
      .poll(async () => (await d.listRelays(10, undefined)).relays.map((r) => r.url))
      .toEqual(["https://left-now.example/", "https://up.example/"]);
    // The next prune is set for the relay that left just now.
    const alarm = await runInDurableObject(d, (_o: DirectoryObject, state) => state.storage.getAlarm());
    expect(alarm).toBe(now + RELAY_RETENTION_MS);
  });
});

describe("DescribeScope", () => {
  it("is NOT_FOUND for a scope never configured or written, and describes the unscoped space when scope is absent", async () => {
    const err = await failure(admin.describeScope({ scope: freshScope("never") }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain("scope");
    const r = await relay(uniqueRelay("unscoped-writer"));
    await r.registerNamespace({ namespace: ns("nobody/else") });
    const d = await admin.describeScope({});
    expect(d.namespaces.map((n) => text(n.namespace))).toContain("nobody/else");
  });

  it("pages each list by its own cursor: every row once, in key order, even with inserts between pages", async () => {
    const scope = freshScope("pages");
    const a = await relay(uniqueRelay("pa"));
    const b = await relay(uniqueRelay("pb"));
    for (const n of ["n1", "n3", "n5", "n7", "n9"]) await a.registerNamespace({ scope, namespace: ns(n) });
    for (const t of ["t1", "t2", "t3"]) await a.registerTrack({ scope, namespace: ns("n1"), track: t });
    await a.subscribeNamespace({ scope, prefix: ns("n") });
    await b.subscribeNamespace({ scope, prefix: ns("n") });
    await admin.putPath({ path: `/${scope}`, scope, permissions: Permissions.READ_ONLY });

    const namespaces: string[] = [];
    const tracks: string[] = [];
    const subscribers: string[] = [];
    const paths: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await admin.describeScope({ scope, pageSize: 2, pageToken });
      expect(page.config).toBeDefined();
      namespaces.push(...page.namespaces.map((n) => text(n.namespace)));
      tracks.push(...page.tracks.map((t) => t.name));
      subscribers.push(...page.namespaceSubscriptions.map((s) => s.relay!.url));
      paths.push(...page.paths.map((p) => p.path));
      pageToken = page.nextPageToken;
      // Rows added behind the cursor must not shift the rest of the list.
      if (pages++ === 0) await a.registerNamespace({ scope, namespace: ns("n0") });
    } while (pageToken !== "");
    expect(pages).toBe(3);
    expect(namespaces).toEqual(["n1", "n3", "n5", "n7", "n9"]);
    expect(tracks).toEqual(["t1", "t2", "t3"]);
    expect([...subscribers].sort()).toEqual([a.url, b.url].sort());
    expect(paths).toEqual([`/${scope}`]);
  });

  it("reports owner and registration time of namespaces", async () => {
    const scope = freshScope("owners");
    const r = await relay(uniqueRelay("owner"));
    const before = Date.now();
    await r.registerNamespace({ scope, namespace: ns("x/y") });
    const { namespaces } = await admin.describeScope({ scope });
    expect(namespaces).toHaveLength(1);
    expect(namespaces[0].relay?.url).toBe(r.url);
    expect(Number(namespaces[0].registeredAtMs)).toBeGreaterThanOrEqual(before - 1000);
  });

  it("rejects tokens that are not its own", async () => {
    const scope = freshScope("tokens");
    await admin.putScopeConfig({ scope, config: {} });
    for (let i = 0; i < 2; i++) await admin.putScopeConfig({ scope: freshScope("tok2"), config: {} });
    const { nextPageToken } = await admin.listScopes({ pageSize: 1 });
    for (const pageToken of [nextPageToken, "e30", "eyJuYW1lc3BhY2VzIjpbMV19"]) {
      const err = await failure(admin.describeScope({ scope, pageToken }));
      expect([err.code, err.rawMessage], pageToken).toEqual([Code.InvalidArgument, expect.stringContaining("page_token")]);
    }
  });

  it("reads each page from an index, wherever the page is", async () => {
    const stub = env.SCOPES.get(env.SCOPES.idFromName(scopeObjectName("describe-plans")));
    const key = new Uint8Array([1, 2, 3]).buffer;
    const plans = await runInDurableObject(stub, (o: ScopeObject) =>
      (Object.keys(DESCRIBE_LISTS) as DescribeList[]).map((list) => {
        const args = DESCRIBE_LISTS[list].blob.map((blob) => (blob ? key : "k"));
        return [list, o.explain(pageQuery(list, args), ...args, 10).join(" | ")] as const;
      }),
    );
    for (const [list, plan] of plans) {
      expect(plan, `${list}: ${plan}`).toMatch(/SEARCH \w+ USING (COVERING )?(INDEX|PRIMARY KEY)/);
      expect(plan, `${list}: ${plan}`).not.toMatch(/TEMP B-TREE/);
    }
  });
});
