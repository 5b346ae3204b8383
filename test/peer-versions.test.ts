// The peer-list versions a shard keeps (model/peer-versions.ts): the changes
// between two versions and pages of one, the caller always left out.
import { describe, expect, it } from "vitest";
import { PEER_VERSIONS_KEEP_MS, PEER_VERSIONS_KEPT, PEER_VERSIONS_MAX, type PeerRelay, PeerVersions } from "../src/model/peer-versions.js";

const peer = (name: string, addr = "127.0.0.1:1") => ({ url: `https://${name}.example/`, addrs: [addr] });
const urls = (peers: PeerRelay[]) => peers.map((p) => p.url);

/** Every page of `version`, read as an edge reads them. */
function allPages(v: PeerVersions, version: number, self: string, size: number): PeerRelay[] {
  const out: PeerRelay[] = [];
  for (let after = ""; ; ) {
    const page = v.page(version, after, self, size);
    if (!page) throw new Error(`no page after '${after}'`);
    expect(page.peers.length).toBeLessThanOrEqual(size);
    out.push(...page.peers);
    if (!page.more) return out;
    after = page.peers[page.peers.length - 1].url;
  }
}

describe("PeerVersions", () => {
  const a = peer("a");
  const b = peer("b", "127.0.0.1:2");
  const c = peer("c", "127.0.0.1:3");
  const d = peer("d", "127.0.0.1:4");

  it("gives the relays new or with new addresses, and the URLs of those gone", () => {
    const v = new PeerVersions();
    v.keep(1, [a, b, c]);
    v.keep(2, [a, { ...b, addrs: ["127.0.0.1:22"] }, d]);
    expect(v.delta(1, 2, "")).toEqual({ changed: [{ ...b, addrs: ["127.0.0.1:22"] }, d], gone: [c.url] });
    expect(v.delta(2, 1, "")).toEqual({ changed: [b, c], gone: [d.url] });
    // Unchanged peers are shared between versions, not copied.
    const [a2] = v.keep(3, [{ ...a }, d]);
    expect(a2).toBe(v.page(1, "", "", 10)?.peers[0]);
  });

  it("leaves the caller out of changes and pages", () => {
    const v = new PeerVersions();
    v.keep(1, [a, b]);
    v.keep(2, [b, c]);
    expect(v.delta(1, 2, c.url)).toEqual({ changed: [], gone: [a.url] });
    expect(v.delta(1, 2, a.url)).toEqual({ changed: [c], gone: [] });
    expect(urls(allPages(v, 2, b.url, 1))).toEqual([c.url]);
  });

  it("pages through a list in order, whatever the page size and wherever the caller falls", () => {
    const v = new PeerVersions();
    const list = Array.from({ length: 7 }, (_, i) => peer(`r${i}`, `127.0.0.1:${10 + i}`));
    v.keep(9, list);
    for (const size of [1, 2, 3, 7, 8]) {
      for (const self of ["", list[0].url, list[2].url, list[6].url]) {
        expect(urls(allPages(v, 9, self, size))).toEqual(urls(list).filter((u) => u !== self));
      }
    }
    // The caller last on a page: `more` still says whether others follow.
    expect(v.page(9, list[4].url, list[6].url, 1)).toEqual({ peers: [list[5]], more: false });
  });

  it("answers undefined for a version not kept, null for a cursor not in the list", () => {
    const v = new PeerVersions();
    v.keep(1, [a]);
    expect(v.page(2, "", "", 5)).toBeUndefined();
    expect(v.delta(1, 2, "")).toBeUndefined();
    expect(v.delta(2, 1, "")).toBeUndefined();
    expect(v.page(1, b.url, "", 5)).toBeNull();
  });

  it(`keeps versions ${PEER_VERSIONS_KEEP_MS / 1000} s, and at least the last ${PEER_VERSIONS_KEPT}, at most ${PEER_VERSIONS_MAX}; a version seen again counts as new`, () => {
    const v = new PeerVersions();
    const t = 1_000_000;
    v.keep(1, [a], t);
    for (let i = 2; i <= PEER_VERSIONS_KEPT + 10; i++) v.keep(i, [a, peer(`x${i}`)], t + i);
    // All young: none dropped.
    expect(v.page(2, "", "", 5)).toBeDefined();
    v.keep(1, [a], t + 100);
    // Old now: all but the last PEER_VERSIONS_KEPT go.
    const later = t + PEER_VERSIONS_KEEP_MS + 200;
    v.keep(PEER_VERSIONS_KEPT + 100, [b], later);
    expect(v.page(1, "", "", 5)?.peers).toEqual([a]);
    expect(v.page(2, "", "", 5)).toBeUndefined();
    expect(v.page(12, "", "", 5)).toBeUndefined();
    expect(v.page(13, "", "", 5)).toBeDefined();
    expect(v.delta(1, PEER_VERSIONS_KEPT + 100, "")).toEqual({ changed: [b], gone: [a.url] });
    // Past the cap, young or not.
    for (let i = 1000; i < 1000 + PEER_VERSIONS_MAX + 5; i++) v.keep(i, [peer(`y${i}`)], later + 1);
    expect(v.page(1000 + 4, "", "", 5)).toBeUndefined();
    expect(v.page(1000 + 5, "", "", 5)).toBeDefined();
  });
});
