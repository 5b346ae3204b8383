// HeartbeatRequest.activity and AdminService.GetNetwork: what relays report
// pulling is validated (bad input names the field and changes nothing), kept
// with the lease, shown as links and pulled namespaces, and gone with the lease.
import { lapseLease } from "./objects.js";
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { Code } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { LinkState, type GetNetworkResponse } from "../src/gen/moqworker/v1/admin_pb.js";
import { RelayActivitySchema, type RelayActivity } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { MAX_LINK_TRACKS, MAX_UPSTREAMS } from "../src/model/activity.js";
import { relayStub } from "../src/objects/stubs.js";
import { adminClient, freshScope, ns, relay, text, type Coordinator } from "./client.js";
import { errorOf } from "./hardening.js";

const admin = adminClient();
const uniqueRelay = (name: string) => `https://${name}-${crypto.randomUUID().slice(0, 8)}.example.com/`;

const activity = (upstreams: RelayActivity["upstreams"] | object[]) => create(RelayActivitySchema, { upstreams: upstreams as never });
const pull = (to: string, scope: string | undefined, tracks: [string, string, number][]) => ({
  relayUrl: to,
  scope,
  tracks: tracks.map(([namespace, track, subscribes]) => ({ namespace: ns(namespace), track, subscribes })),
  idleMs: 5n,
});

/** The links and namespaces of GetNetwork that involve these relays. */
function about(net: GetNetworkResponse, urls: string[]) {
  const mine = (u: string) => urls.includes(u);
  return {
    relays: net.relays.filter((r) => mine(r.url)).map((r) => ({ url: r.url, alive: r.alive })),
    links: net.links
      .filter((l) => mine(l.fromUrl) || mine(l.toUrl))
      .map((l) => ({
        from: l.fromUrl,
        to: l.toUrl,
        scope: l.scope,
        state: l.state,
        tracks: l.tracks.map((t) => `${text(t.namespace)}:${t.track}x${t.subscribes}`),
      })),
    namespaces: net.namespaces
      .filter((n) => mine(n.hostUrl))
      .map((n) => ({ scope: n.scope, namespace: text(n.namespace), host: n.hostUrl, pulledBy: n.pulledBy })),
  };
}

/** A relay that beats once (its first beat notes the directory at once). */
async function beating(name: string, report?: RelayActivity): Promise<Coordinator> {
  const r = await relay(uniqueRelay(name), "binary", `${name}-e1`);
  await r.heartbeat({ epoch: `${name}-e1`, addrs: [], activity: report });
  return r;
}

const lapse = lapseLease;

describe("GetNetwork", () => {
  it("shows a reported link, with the namespace on its host and its puller", async () => {
    const scope = freshScope("net");
    const host = await beating("host");
    await host.registerNamespace({ scope, namespace: ns("clock") });
    // The puller names the upstream at its relay-link URL, as Lookup answered it.
    const link = `${host.url}_relay/abc/def`;
    const puller = await beating("puller", activity([pull(link, scope, [["clock/now", "seconds", 2]])]));

    const net = about(await admin.getNetwork({}), [host.url, puller.url]);
    expect(net.relays).toEqual(
      [
        { url: host.url, alive: true },
        { url: puller.url, alive: true },
      ].sort((a, b) => a.url.localeCompare(b.url)),
    );
    expect(net.links).toEqual([{ from: puller.url, to: host.url, scope, state: LinkState.UP, tracks: ["clock/now:secondsx2"] }]);
    expect(net.namespaces).toEqual([{ scope, namespace: "clock", host: host.url, pulledBy: [puller.url] }]);

    // Filtered by another scope: no link, no namespace of this one.
    const other = about(await admin.getNetwork({ scope: freshScope("other") }), [host.url, puller.url]);
    expect(other.links).toEqual([]);
    expect(other.namespaces).toEqual([]);
  });

  it("drops a relay's links when its lease lapses; links to a relay that left are UPSTREAM_DOWN", async () => {
    const scope = freshScope("net-lapse");
    const host = await beating("host");
    const puller = await beating("puller", activity([pull(host.url, scope, [["a", "t", 1]])]));
    const second = await beating("second", activity([pull(puller.url, scope, [])]));

    await host.shutdown({});
    let net = about(await admin.getNetwork({}), [host.url, puller.url, second.url]);
    expect(net.links.map((l) => [l.from, l.to, l.state])).toEqual(
      [
        [puller.url, host.url, LinkState.UPSTREAM_DOWN],
        [second.url, puller.url, LinkState.UP],
      ].sort(),
    );

    await lapse(puller.url);
    net = about(await admin.getNetwork({}), [host.url, puller.url, second.url]);
    expect(net.links.map((l) => [l.from, l.to, l.state])).toEqual([[second.url, puller.url, LinkState.UPSTREAM_DOWN]]);
    // Kept by nobody: the relay object forgot it with the lease.
    expect(
      await runInDurableObject(relayStub(env, puller.url), (_o, s) => s.storage.sql.exec("SELECT activity FROM lease").one().activity),
    ).toBe(null);
  });

  it("refuses a scope of '' (INVALID_ARGUMENT naming scope)", async () => {
    const err = await errorOf(admin.getNetwork({ scope: "" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^scope/);
  });
});

describe("Heartbeat activity", () => {
  const bad: [string, () => RelayActivity, RegExp][] = [
    [
      "too many upstreams",
      () => activity(Array.from({ length: MAX_UPSTREAMS + 1 }, (_, i) => pull(`https://r${i}.example/`, "s", []))),
      /^activity\.upstreams: has 65 entries/,
    ],
    ["a relay_url that is not https", () => activity([pull("http://x.example/", "s", [])]), /^activity\.upstreams\[0\]\.relay_url:/],
    ["an empty relay_url", () => activity([pull("", "s", [])]), /^activity\.upstreams\[0\]\.relay_url:/],
    ["a scope of ''", () => activity([pull("https://x.example/", "", [])]), /^activity\.upstreams\[0\]\.scope/],
    [
      "the same link twice",
      () => activity([pull("https://x.example/_relay/a/b", "s", []), pull("https://x.example/", "s", [])]),
      /^activity\.upstreams\[1\]: repeats/,
    ],
    [
      "too many tracks on a link",
      () =>
        activity([
          pull(
            "https://x.example/",
            "s",
            Array.from({ length: MAX_LINK_TRACKS + 1 }, (_, i): [string, string, number] => ["a", `t${i}`, 1]),
          ),
        ]),
      /^activity\.upstreams\[0\]\.tracks: has 33 entries/,
    ],
    ["an empty track", () => activity([pull("https://x.example/", "s", [["a", "", 1]])]), /^activity\.upstreams\[0\]\.tracks\[0\]\.track/],
    [
      "an empty namespace",
      () => activity([pull("https://x.example/", "s", [["", "t", 1]])]),
      /^activity\.upstreams\[0\]\.tracks\[0\]\.namespace/,
    ],
  ];

  for (const [what, report, message] of bad) {
    it(`refuses ${what} with INVALID_ARGUMENT naming the field, and keeps the last report`, async () => {
      const scope = freshScope("kept");
      const host = await beating("host");
      const r = await beating("reporter", activity([pull(host.url, scope, [])]));
      const err = await errorOf(r.heartbeat({ epoch: "reporter-e1", addrs: [], activity: report() }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(message);
      const kept = await runInDurableObject(
        relayStub(env, r.url),
        (_o, s) => s.storage.sql.exec("SELECT activity FROM lease").one().activity,
      );
      expect(JSON.parse(kept as string).upstreams.map((u: { to: string }) => u.to)).toEqual([host.url]);
    });
  }

  it("a beat without activity clears the last report", async () => {
    const r = await beating("reporter", activity([pull("https://x.example/", "s", [])]));
    await r.heartbeat({ epoch: "reporter-e1", addrs: [] });
    expect(
      await runInDurableObject(relayStub(env, r.url), (_o, s) => s.storage.sql.exec("SELECT activity FROM lease").one().activity),
    ).toBe(null);
  });
});
