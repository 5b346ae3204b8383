// Routing never crosses MoQT drafts (coordinator.proto, Moq-Relay-Versions):
// a relay is never handed an upstream or a subscriber relay it shares no
// version with, on either lane (binary fast path, JSON), and a malformed
// header is refused naming it, changing nothing.
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { Interface } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { parseVersions, speakTogether } from "../src/model/moqt-version.js";
import { adminClient, codeOf, freshScope, ns, relay, text, uniqueRelayUrl } from "./client.js";
import { errorOf } from "./hardening.js";

const unique = uniqueRelayUrl;
const publicCtx = { interface: Interface.PUBLIC };

describe("parseVersions / speakTogether", () => {
  it("reads ALPN identifiers, keeps order, drops repeats", () => {
    expect(parseVersions(null)).toBeUndefined();
    expect(parseVersions("moqt-18")).toEqual(["moqt-18"]);
    expect(parseVersions("moqt-20, moqt-18,moqt-20")).toEqual(["moqt-20", "moqt-18"]);
  });

  it("refuses what is not a version list, naming the header", () => {
    for (const bad of ["", "moqt-18,", "MOQT-18", "moqt 18", "x".repeat(32), Array.from({ length: 9 }, (_, i) => `v${i}`).join(",")]) {
      expect(() => parseVersions(bad), bad).toThrow(/moq-relay-versions header/);
    }
  });

  it("relays talk when they share a version, or one never said", () => {
    expect(speakTogether(["moqt-18"], ["moqt-18"])).toBe(true);
    expect(speakTogether(["moqt-20", "moqt-18"], ["moqt-18"])).toBe(true);
    expect(speakTogether(["moqt-16"], ["moqt-18"])).toBe(false);
    expect(speakTogether(undefined, ["moqt-18"])).toBe(true);
    expect(speakTogether([], ["moqt-16"])).toBe(true);
  });
});

describe.each(["binary", "json"] as const)("routing across drafts (%s)", (format) => {
  /** A scope with a 0.7 host (moqt-16) of old/live and a 0.8 host (moqt-18) of new/live. */
  async function mixed() {
    const scope = freshScope(`drafts-${format}`);
    const old = await relay(unique("old"), format, "o1", "moqt-16");
    const cur = await relay(unique("cur"), format, "c1", "moqt-18");
    const viewer18 = await relay(unique("viewer18"), format, "v1", "moqt-18");
    const viewer16 = await relay(unique("viewer16"), format, "w1", "moqt-16");
    const tool = await relay(unique("tool"), format);
    await old.heartbeat({ epoch: "o1", addrs: ["127.0.0.1:4001"] });
    await cur.heartbeat({ epoch: "c1", addrs: ["127.0.0.1:4002"] });
    await old.registerNamespace({ scope, namespace: ns("old/live"), context: publicCtx });
    await cur.registerNamespace({ scope, namespace: ns("new/live"), context: publicCtx });
    await old.registerTrack({ scope, namespace: ns("old/tracks"), track: "video" });
    return { scope, old, cur, viewer18, viewer16, tool };
  }

  it("Lookup and LookupTrack answer NOT_FOUND for a host of another draft, naming its version", async () => {
    const { scope, old, cur, viewer18, viewer16, tool } = await mixed();
    const err = await errorOf(viewer18.lookup({ scope, namespace: ns("old/live/cam") }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toMatch(/moqt-16/);
    expect(await codeOf(viewer18.lookupTrack({ scope, namespace: ns("old/live"), track: "x" }))).toBe(Code.NotFound);
    expect(await codeOf(viewer18.lookupTrack({ scope, namespace: ns("old/tracks"), track: "video" }))).toBe(Code.NotFound);
    expect(await codeOf(viewer16.lookup({ scope, namespace: ns("new/live") }))).toBe(Code.NotFound);
    // Same draft, and a caller that never said: routed as before.
    expect((await viewer16.lookup({ scope, namespace: ns("old/live/cam") })).origin?.relay?.addr).toBe("127.0.0.1:4001");
    expect(text((await viewer18.lookup({ scope, namespace: ns("new/live/cam") })).origin?.namespace)).toBe("new/live");
    expect((await viewer16.lookupTrack({ scope, namespace: ns("old/tracks"), track: "video" })).origin?.relay?.addr).toBe("127.0.0.1:4001");
    expect((await tool.lookup({ scope, namespace: ns("old/live") })).origin?.relay?.addr).toBe("127.0.0.1:4001");
    expect((await tool.lookup({ scope, namespace: ns("new/live") })).origin?.relay?.addr).toBe("127.0.0.1:4002");
    // The hosts themselves are untouched by the refusals.
    expect(await codeOf(old.registerNamespace({ scope, namespace: ns("old/live"), context: publicCtx }))).toBe("ok");
    expect(await codeOf(cur.registerNamespace({ scope, namespace: ns("new/live"), context: publicCtx }))).toBe("ok");
  });

  it("SubscribeNamespace's upstreams and both subscriber lookups leave out other drafts", async () => {
    const { scope, old, cur, viewer18, viewer16 } = await mixed();
    const up18 = await viewer18.subscribeNamespace({ scope, prefix: ns(""), context: publicCtx });
    expect(up18.upstreamRelays.map((r) => r.addr)).toEqual(["127.0.0.1:4002"]);
    const up16 = await viewer16.subscribeNamespace({ scope, prefix: ns(""), context: publicCtx });
    expect(up16.upstreamRelays.map((r) => r.addr)).toEqual(["127.0.0.1:4001"]);

    // viewer16 and viewer18 now want every namespace: each host hears only of its own draft.
    const subs = async (host: typeof old, namespace: string) =>
      (await host.lookupNamespaceSubscribers({ scope, namespace: ns(namespace), context: publicCtx })).relays.map((r) => r.url);
    expect(await subs(old, "old/live")).toEqual([expect.stringContaining("viewer16")]);
    expect(await subs(cur, "new/live")).toEqual([expect.stringContaining("viewer18")]);

    await viewer16.subscribeTrack({ scope, namespace: ns("old/tracks"), track: "video" });
    await viewer18.subscribeTrack({ scope, namespace: ns("old/tracks"), track: "video" });
    const trackSubs = async (host: typeof old) =>
      (await host.lookupTrackSubscribers({ scope, namespace: ns("old/tracks"), track: "video" })).relays.map((r) => r.url);
    expect(await trackSubs(old)).toEqual([expect.stringContaining("viewer16")]);
    expect(await trackSubs(cur)).toEqual([expect.stringContaining("viewer18")]);
  });

  it("a malformed header is INVALID_ARGUMENT naming it, and stores nothing", async () => {
    const scope = freshScope(`drafts-bad-${format}`);
    const bad = await relay(unique("bad"), format, "b1", "moqt 18");
    const err = await errorOf(bad.registerNamespace({ scope, namespace: ns("bad/live"), context: publicCtx }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^moq-relay-versions header/);
    expect(await codeOf(bad.heartbeat({ epoch: "b1" }))).toBe(Code.InvalidArgument);
    const viewer = await relay(unique("viewer"), format);
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("bad/live") }))).toBe(Code.NotFound);
  });
});

describe("a relay's versions", () => {
  it("are listed by ListRelays, and a change re-routes at once", async () => {
    const scope = freshScope("drafts-change");
    const url = unique("switch");
    const host = await relay(url, "binary", "s1", "moqt-16");
    await host.heartbeat({ epoch: "s1" });
    await host.registerNamespace({ scope, namespace: ns("switch/live"), context: publicCtx });
    const viewer = await relay(unique("viewer"), "binary", "v1", "moqt-18");
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("switch/live") }))).toBe(Code.NotFound);

    const listed = async () => {
      const { relays } = await adminClient().listRelays({ pageSize: 1000 });
      return relays.find((r) => r.url === new URL(url).href)?.moqtVersions;
    };
    expect(await listed()).toEqual(["moqt-16"]);

    // The same process saying it now also speaks moqt-18 (a tool may): answers follow.
    const both = await relay(url, "binary", "s1", "moqt-16,moqt-18");
    await both.heartbeat({ epoch: "s1" });
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("switch/live") }))).toBe("ok");
    expect(await listed()).toEqual(["moqt-16", "moqt-18"]);
  });
});
