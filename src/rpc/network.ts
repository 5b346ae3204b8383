// GetNetwork: the relays, the relay-to-relay links alive relays report in
// their heartbeats (kept with each lease, noted to the directory), and each
// namespace on its hosting relay with the relays that pull it. One read of
// the directory for relays and links, one of it for scope names, then one
// describe per scope shown (in parallel).
import { create } from "@bufbuild/protobuf";
import {
  GetNetworkResponseSchema,
  LinkState,
  NetworkLinkSchema,
  NetworkNamespaceSchema,
  type GetNetworkRequest,
  type GetNetworkResponse,
} from "../gen/moqworker/v1/admin_pb.js";
import { PulledTrackSchema } from "../gen/moqworker/v1/coordinator_pb.js";
import type { Env } from "../env.js";
import { relayOrigin, type UpstreamNote } from "../model/activity.js";
import { fromBase64Url } from "../model/base64url.js";
import { checkScopeName } from "../model/validate.js";
import { FIRST_PAGE } from "../objects/scope-describe.js";
import { type Scope, scopeFromListedName, UNSCOPED } from "../objects/scope-name.js";
import { directoryStub, scopeStub } from "../objects/stubs.js";
import { namespaceMsg } from "./convert.js";
import { MAX_RELAYS_PAGE, relayRecord } from "./relays.js";

/** Scopes whose namespaces are shown, and namespaces per scope: a picture, not an inventory. */
export const MAX_NETWORK_SCOPES = 100;
export const MAX_NETWORK_NAMESPACES = 100;

const bytesOf = (fields: string[]) => fields.map((f) => fromBase64Url(f) ?? new Uint8Array());
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const isPrefix = (prefix: Uint8Array[], of: Uint8Array[]) => prefix.length <= of.length && prefix.every((f, i) => sameBytes(f, of[i]));

interface Link extends UpstreamNote {
  from: string;
}

export async function getNetwork(env: Env, req: GetNetworkRequest): Promise<GetNetworkResponse> {
  const only: Scope | undefined = req.scope === undefined ? undefined : checkScopeName("scope", req.scope);
  const [listed, scopeList] = await Promise.all([
    directoryStub(env).listRelays(MAX_RELAYS_PAGE, undefined, true),
    only === undefined
      ? directoryStub(env).listScopes(MAX_NETWORK_SCOPES, undefined)
      : Promise.resolve({ names: [only], more: false, total: 1 }),
  ]);
  let truncated = listed.more || scopeList.more;

  // Relays by origin: links name upstreams without the relay-link path.
  const byOrigin = new Map(listed.relays.map((r) => [relayOrigin(r.url), r]));
  const links: Link[] = [];
  for (const r of listed.relays) {
    for (const u of r.activity?.upstreams ?? []) {
      if (only !== undefined && u.scope !== only) continue;
      links.push({ ...u, from: r.url, to: byOrigin.get(u.to)?.url ?? u.to });
    }
  }
  links.sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to) || (a.scope ?? "").localeCompare(b.scope ?? ""));

  const scopes: Scope[] = scopeList.names.map((n) => (only === undefined ? scopeFromListedName(n) : n));
  const described = await Promise.all(scopes.map((s) => scopeStub(env, s).describe(MAX_NETWORK_NAMESPACES, FIRST_PAGE)));
  const namespaces = scopes.flatMap((scope, i) => {
    const d = described[i];
    if (!d) return [];
    if (Object.keys(d.next).includes("namespaces")) truncated = true;
    return d.namespaces.map((n) => {
      const host = byOrigin.get(relayOrigin(n.relay.url))?.url ?? n.relay.url;
      // A puller of a track under this namespace, from its host, in its scope.
      const pulledBy = links
        .filter((l) => l.to === host && l.scope === scope && l.tracks.some((t) => isPrefix(n.fields, bytesOf(t.fields))))
        .map((l) => l.from);
      return create(NetworkNamespaceSchema, {
        scope: scope === UNSCOPED ? undefined : scope,
        namespace: namespaceMsg(n.fields),
        hostUrl: host,
        pulledBy: [...new Set(pulledBy)],
      });
    });
  });

  const alive = new Set(listed.relays.filter((r) => r.alive).map((r) => r.url));
  return create(GetNetworkResponseSchema, {
    relays: listed.relays.map(relayRecord),
    links: links.map((l) =>
      create(NetworkLinkSchema, {
        fromUrl: l.from,
        toUrl: l.to,
        scope: l.scope ?? undefined,
        state: alive.has(l.to) ? LinkState.UP : LinkState.UPSTREAM_DOWN,
        idleMs: BigInt(l.idleMs),
        tracks: l.tracks.map((t) =>
          create(PulledTrackSchema, { namespace: namespaceMsg(bytesOf(t.fields)), track: t.track, subscribes: t.subscribes }),
        ),
      }),
    ),
    namespaces,
    truncated,
    atMs: BigInt(Date.now()),
  });
}
