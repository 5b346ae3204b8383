// Peer lists in parts (HeartbeatRequest.peers_in_parts), with PEER_PAGE_SIZE
// = 2 (vitest.config.ts, project "config"): a relay gets the changes since the
// version it holds when they fit in a page, otherwise the list's first page
// and ListPeers for the rest. Whatever the route, it ends with the list an
// edge that takes it whole is given.
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import type { PeerRelay } from "../../src/gen/moqworker/v1/coordinator_pb.js";
import { type Coordinator, relay, uniqueRelayUrl } from "../client.js";
import { errorOf } from "../hardening.js";

const PAGE = 2;
let port = 5000;

async function live(name: string): Promise<Coordinator> {
  const r = await relay(uniqueRelayUrl(name), "binary", "e1");
  await r.heartbeat({ epoch: "e1", addrs: [`127.0.0.1:${port++}`] });
  return r;
}

const plain = (peers: PeerRelay[]) => peers.map((p) => ({ url: p.url, addrs: [...p.addrs] })).sort((x, y) => (x.url < y.url ? -1 : 1));

/** What an edge holds: the list by URL and its version. */
interface Held {
  version: bigint;
  peers: Map<string, string[]>;
}

/** One beat of `r` asking for fresh peers in parts, applied to `held` as an edge applies it (reading every page). */
async function beatInParts(r: Coordinator, held: Held): Promise<"unchanged" | "delta" | "pages" | "whole"> {
  const reply = await r.heartbeat({ epoch: "e1", freshPeers: true, peersVersion: held.version, peersInParts: true });
  expect(reply.peers.length).toBeLessThanOrEqual(PAGE);
  if (reply.peersUnchanged) return "unchanged";
  if (reply.peersDelta) {
    for (const url of reply.peersGone) held.peers.delete(url);
    for (const p of reply.peers) held.peers.set(p.url, p.addrs);
    held.version = reply.peersVersion;
    return "delta";
  }
  const all = [...reply.peers];
  const paged = reply.peersMore;
  for (let more = reply.peersMore; more; ) {
    const page = await r.listPeers({ peersVersion: reply.peersVersion, after: all[all.length - 1].url });
    expect(page.peers.length).toBeLessThanOrEqual(PAGE);
    all.push(...page.peers);
    more = page.more;
  }
  held.peers = new Map(all.map((p) => [p.url, p.addrs]));
  held.version = reply.peersVersion;
  return paged ? "pages" : "whole";
}

/** The whole list, as an edge that does not take parts gets it, at `version`. */
async function whole(r: Coordinator, version: bigint): Promise<{ url: string; addrs: string[] }[]> {
  const reply = await r.heartbeat({ epoch: "e1" });
  expect(reply.peersVersion).toBe(version);
  expect([reply.peersDelta, reply.peersMore]).toEqual([false, false]);
  return plain(reply.peers);
}

const heldList = (held: Held) => plain([...held.peers].map(([url, addrs]) => ({ url, addrs }) as PeerRelay));

describe("peer lists in parts", () => {
  it("come as pages, then as changes, and always add up to the whole list", async () => {
    const a = await live("parts-a");
    const others = [];
    for (let i = 0; i < 4; i++) others.push(await live(`parts-${i}`));
    const held: Held = { version: 0n, peers: new Map() };
    expect(await beatInParts(a, held)).toBe("pages");
    const first = heldList(held);
    expect(first.length).toBeGreaterThan(PAGE);
    expect(first.map((p) => p.url)).not.toContain(a.url);
    for (const o of others) expect(first.map((p) => p.url)).toContain(o.url);
    expect(first).toEqual(await whole(a, held.version));
    expect(await beatInParts(a, held)).toBe("unchanged");

    // One joins: the change alone.
    const joined = await live("parts-joined");
    expect(await beatInParts(a, held)).toBe("delta");
    expect(held.peers.get(joined.url)).toBeDefined();
    expect(heldList(held)).toEqual(await whole(a, held.version));

    // One leaves, one moves: two changes, still one page.
    await others[0].shutdown({});
    await others[1].heartbeat({ epoch: "e1", addrs: ["127.0.0.1:5999"] });
    expect(await beatInParts(a, held)).toBe("delta");
    expect(held.peers.has(others[0].url)).toBe(false);
    expect(held.peers.get(others[1].url)).toEqual(["127.0.0.1:5999"]);
    expect(heldList(held)).toEqual(await whole(a, held.version));

    // More changes than a page: pages again.
    for (let i = 0; i < PAGE + 1; i++) await live(`parts-burst-${i}`);
    expect(await beatInParts(a, held)).toBe("pages");
    expect(heldList(held)).toEqual(await whole(a, held.version));
  });

  it("a relay holding a version its shard never had takes the list in pages", async () => {
    const a = await live("parts-stranger");
    for (let i = 0; i < PAGE + 1; i++) await live(`parts-stranger-${i}`);
    const held: Held = { version: 12345n, peers: new Map([["https://gone.example/", ["127.0.0.1:9"]]]) };
    expect(await beatInParts(a, held)).toBe("pages");
    expect(held.peers.has("https://gone.example/")).toBe(false);
    expect(heldList(held)).toEqual(await whole(a, held.version));
  });

  it("ListPeers refuses a version no longer kept, version 0 and a cursor not in the list, naming the field", async () => {
    const a = await live("parts-refuse");
    await live("parts-refuse-1");
    const reply = await a.heartbeat({ epoch: "e1", freshPeers: true, peersInParts: true });
    const stale = await errorOf(a.listPeers({ peersVersion: reply.peersVersion + 1n, after: reply.peers[0].url }));
    expect([stale.code, stale.rawMessage]).toEqual([Code.Aborted, expect.stringMatching(/^peers_version: .*next Heartbeat/)]);
    const zero = await errorOf(a.listPeers({ peersVersion: 0n }));
    expect([zero.code, zero.rawMessage]).toEqual([Code.InvalidArgument, expect.stringMatching(/^peers_version: /)]);
    const cursor = await errorOf(a.listPeers({ peersVersion: reply.peersVersion, after: "https://nobody.example/" }));
    expect([cursor.code, cursor.rawMessage]).toEqual([Code.InvalidArgument, expect.stringMatching(/^after: /)]);
  });
});
