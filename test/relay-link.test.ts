// Scoped relay-to-relay routing (docs/lifetimes.md "Relay network", SECURITY.md
// "Relay links"): every relay a scoped answer names is dialled at the scope's
// relay-link path, which ResolveScope turns back into that scope. The expected
// paths are computed here from the contract (HMAC-SHA256 with WebCrypto), not
// with the Worker's own code.
import { beforeAll, describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { Code } from "@connectrpc/connect";
import { Interface, Permissions } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { adminClient, b64url, expectedLink, freshScope, ns, relay, type Coordinator } from "./client.js";
import { coordinatorAs, errorOf, jwt, RELAY_AUDIENCE, scopeState } from "./hardening.js";


const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** 16 bytes take 22 characters, the last carrying 4 unused bits: setting one decodes to the same MAC. */
const nonCanonical = (path: string) => `${path.slice(0, -1)}${ALPHABET[ALPHABET.indexOf(path.slice(-1)) | 1]}`;

const pathOf = (url: string | undefined) => new URL(url ?? "").pathname;

let scope: string;
let link: string;
let pub: Coordinator;
let sub: Coordinator;

beforeAll(async () => {
  scope = freshScope("link");
  link = await expectedLink(scope);
  pub = await relay("https://link-pub.example.com:4443");
  sub = await relay("https://link-sub.example.com");
  await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true } });
  await pub.registerNamespace({ scope, namespace: ns("live/cam") });
  await pub.registerTrack({ scope, namespace: ns("live/cam"), track: "video" });
  await sub.subscribeNamespace({ scope, prefix: ns("live") });
  await sub.subscribeTrack({ scope, namespace: ns("live/cam"), track: "audio" });
});

describe("scoped answers carry the scope's relay-link path", () => {
  it("in every answer that names a relay: Lookup, LookupTrack, SubscribeNamespace, LookupNamespaceSubscribers, LookupTrackSubscribers", async () => {
    const urls = {
      lookup: (await sub.lookup({ scope, namespace: ns("live/cam") })).origin?.relay?.url,
      lookupTrack: (await sub.lookupTrack({ scope, namespace: ns("live/cam"), track: "video" })).origin?.relay?.url,
      upstream: (await sub.subscribeNamespace({ scope, prefix: ns("live") })).upstreamRelays.map((r) => r.url),
      nsSubscribers: (await pub.lookupNamespaceSubscribers({ scope, namespace: ns("live/cam") })).relays.map((r) => r.url),
      trackSubscribers: (await pub.lookupTrackSubscribers({ scope, namespace: ns("live/cam"), track: "audio" })).relays.map((r) => r.url),
    };
    const atPub = `https://link-pub.example.com:4443${link}`;
    const atSub = `https://link-sub.example.com${link}`;
    expect(urls).toEqual({ lookup: atPub, lookupTrack: atPub, upstream: [atPub], nsSubscribers: [atSub], trackSubscribers: [atSub] });
  });

  it("is the same for every relay and every call of the scope (links are reused), and differs between scopes", async () => {
    const again = (await sub.lookup({ scope, namespace: ns("live/cam") })).origin?.relay?.url;
    expect(again).toBe(`https://link-pub.example.com:4443${link}`);
    const other = freshScope("link-other");
    await pub.registerNamespace({ scope: other, namespace: ns("live/cam") });
    const there = pathOf((await sub.lookup({ scope: other, namespace: ns("live/cam") })).origin?.relay?.url);
    expect(there).toBe(await expectedLink(other));
    expect(there).not.toBe(link);
  });

  it("excludes a source the edge names at its link URL (as it dialled it), like its registered URL", async () => {
    const third = await relay("https://link-third.example.com");
    await third.subscribeNamespace({ scope, prefix: ns("live") });
    const ask = (sourceUrl: string) =>
      pub.lookupNamespaceSubscribers({ scope, namespace: ns("live/cam"), context: { interface: Interface.INTERNAL, sourceUrl } });
    const [byLink, byUrl] = [await ask(`https://link-sub.example.com${link}`), await ask("https://link-sub.example.com/")];
    expect(byLink.relays.map((r) => r.url)).toEqual([`https://link-third.example.com${link}`]);
    expect(byUrl.relays.map((r) => r.url)).toEqual(byLink.relays.map((r) => r.url));
    await third.unsubscribeNamespace({ scope, prefix: ns("live") });
  });

  it("leaves unscoped answers as registered", async () => {
    const room = `unscoped-${crypto.randomUUID()}`;
    await pub.registerNamespace({ namespace: ns(room) });
    expect((await sub.lookup({ namespace: ns(room) })).origin?.relay?.url).toBe("https://link-pub.example.com:4443/");
  });
});

describe("ResolveScope of a relay-link path", () => {
  it("resolves to the scope with READ_WRITE and relay_link, with no path mapped", async () => {
    const res = await pub.resolveScope({ connectionPath: link });
    expect([res.scope?.scopeId, res.scope?.permissions, res.relayLink]).toEqual([scope, Permissions.READ_WRITE, true]);
  });

  it("is allowed for a token limited to that scope", async () => {
    const limited = coordinatorAs(`Bearer ${await jwt({ sub: "https://link-limited.example.com/", aud: RELAY_AUDIENCE, scp: [scope] })}`);
    expect((await limited.resolveScope({ connectionPath: link })).scope?.scopeId).toBe(scope);
  });

  it("marks only link paths: a mapped path answers relay_link = false", async () => {
    const path = `/link-mapped-${crypto.randomUUID()}`;
    await adminClient().putPath({ path, scope, permissions: Permissions.READ_ONLY });
    const res = await pub.resolveScope({ connectionPath: path });
    expect([res.scope?.scopeId, res.scope?.permissions, res.relayLink]).toEqual([scope, Permissions.READ_ONLY, false]);
  });
});

describe("bad input of the relay-link surface: a clear error naming the field, nothing changed", () => {
  const forgedMac = () => {
    const [, , s, mac] = link.split("/");
    // Same length, last character changed: a MAC nobody made.
    return `/_relay/${s}/${mac.slice(0, -1)}${mac.endsWith("A") ? "Q" : "A"}`;
  };

  it.each([
    ["a forged MAC", () => forgedMac(), Code.PermissionDenied, /connection_path: .*MAC this network did not make/],
    ["another scope's MAC with this scope's name", async () => `/_relay/${link.split("/")[2]}/${(await expectedLink(`${scope}-x`)).split("/")[3]}`, Code.PermissionDenied, /connection_path: .*did not make/],
    ["a MAC made with a secret that is not ours", async () => expectedLink(scope, "not-our-secret"), Code.PermissionDenied, /connection_path: .*did not make/],
    ["a truncated MAC", () => link.slice(0, -4), Code.InvalidArgument, /connection_path: the MAC segment .* not 16 bytes/],
    ["a garbled MAC (not base64url)", () => `${link.slice(0, -2)}!!`, Code.InvalidArgument, /connection_path: the MAC segment/],
    ["the same MAC spelt with non-zero padding bits", () => nonCanonical(link), Code.InvalidArgument, /connection_path: the MAC segment/],
    ["a garbled scope segment", () => `/_relay/not*base64/${link.split("/")[3]}`, Code.InvalidArgument, /connection_path: the scope segment/],
    ["a scope segment that is not UTF-8", () => `/_relay/${b64url(new Uint8Array([0xff, 0xfe]))}/${link.split("/")[3]}`, Code.InvalidArgument, /connection_path: the scope segment/],
    ["the bare prefix", () => "/_relay", Code.InvalidArgument, /connection_path: a relay-link path has the form/],
    ["a missing MAC", () => `/_relay/${link.split("/")[2]}`, Code.InvalidArgument, /connection_path: a relay-link path has the form/],
    ["an extra segment", () => `${link}/more`, Code.InvalidArgument, /connection_path: a relay-link path has the form/],
  ])("%s", async (_name, make, code, message) => {
    const before = await scopeState([scope]);
    const err = await errorOf(pub.resolveScope({ connectionPath: await make() }));
    expect([err.code, err.rawMessage]).toEqual([code, expect.stringMatching(message)]);
    expect(await scopeState([scope])).toEqual(before);
  });

  it("refuses a valid link for a scope the caller's token may not act in (PERMISSION_DENIED)", async () => {
    const other = coordinatorAs(`Bearer ${await jwt({ sub: "https://link-other.example.com/", aud: RELAY_AUDIENCE, scp: ["somewhere-else"] })}`);
    const err = await errorOf(other.resolveScope({ connectionPath: link }));
    expect([err.code, err.rawMessage]).toEqual([Code.PermissionDenied, expect.stringContaining("connection_path")]);
  });

  it("PutPath refuses paths under /_relay (INVALID_ARGUMENT naming path) and maps nothing", async () => {
    const before = await scopeState([scope]);
    for (const path of [link, "/_relay", "/_relay/", "/_relay/anything/else/too"]) {
      const err = await errorOf(adminClient().putPath({ path, scope, permissions: Permissions.READ_WRITE }));
      expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, expect.stringMatching(/^path: paths under \/_relay are reserved/)]);
    }
    expect(await scopeState([scope])).toEqual(before);
    expect(await env.PATHS.get(env.PATHS.idFromName(link)).get()).toBeNull();
    // "/_relayed" is an ordinary path.
    const ok = await adminClient().putPath({ path: `/_relayed-${crypto.randomUUID()}`, scope, permissions: Permissions.READ_ONLY });
    expect(ok.path).toMatch(/^\/_relayed-/);
  });
});
