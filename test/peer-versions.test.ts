// The peer-list versions a shard keeps (model/peer-versions.ts): the changes
// between two versions and pages of one, the caller always left out.
import { describe, expect, it } from "vitest";
import { PEER_VERSIONS_KEPT, type PeerRelay, PeerVersions } from "../src/model/peer-versions.js";

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

  it(`keeps the last ${PEER_VERSIONS_KEPT} versions, a version seen again counting as new`, () => {
    const v = new PeerVersions();
    v.keep(1, [a]);
    for (let i = 2; i <= PEER_VERSIONS_KEPT; i++) v.keep(i, [a, peer(`x${i}`)]);
    v.keep(1, [a]);
    v.keep(PEER_VERSIONS_KEPT + 1, [b]);
    expect(v.page(1, "", "", 5)?.peers).toEqual([a]);
    expect(v.page(2, "", "", 5)).toBeUndefined();
    expect(v.delta(1, PEER_VERSIONS_KEPT + 1, "")).toEqual({ changed: [b], gone: [a.url] });
  });
});
