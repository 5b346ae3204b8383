// CoordinatorService: one handler per Coordinator trait method. Each validates
// its request (nothing is stored on bad input), then asks the scope's object.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { CoordinatorService, Permissions, ScopeInfoSchema, TrackEntrySchema, type Namespace } from "../gen/moqworker/v1/coordinator_pb.js";
import { isRelayLinkPath, linkUrl, relayLinkPath, verifyRelayLinkPath, withoutLinkPath } from "../auth/relay-link.js";
import { tokenSecrets } from "../auth/relay-token.js";
import type { Env } from "../env.js";
import { normalizeConnectionPath } from "../model/path.js";
import { limitsOf } from "../limits.js";
import { checkNamespace, checkTrack, invalid } from "../model/validate.js";
import { checkBeat } from "./heartbeat-check.js";
import type { RouteMatch } from "../objects/scope.js";
import { encodeTuple } from "../model/tuple.js";
import type { Origin, RelayRef } from "../objects/types.js";
import type { Scope } from "../objects/scope-name.js";
import { pathStub, peerShardStub, relayStub, scopeStub } from "../objects/stubs.js";
import { peerShardOf } from "../objects/peer-shard.js";
import type { Caller } from "./context.js";
import { scopeConfigMsg } from "./scope-config.js";
import { callerOf, envOf, namespaceMsg, originOf, requireRelayCaller, scopeOf, unwrap } from "./convert.js";
import {
  type OriginAnswer,
  readScopedNamespaceRequest,
  type ScopedNamespaceRequest,
  writeLookupResponse,
  writeRegisterNamespaceResponse,
} from "./fast-wire.js";
import { type FastPath, fastMethod } from "./fast-method.js";

type RelayView = (ref: RelayRef) => RelayRef;

const asRegistered: RelayView = (ref) => ref;

/**
 * How relays appear in an answer about `scope`: the one place every RelayInfo
 * of a coordinator answer is made (as plain data: connect-es or the fast path
 * encodes it). Unscoped: as registered. Scoped: at the scope's relay-link
 * path, so the relay dialled serves the session from the same scope
 * (auth/relay-link.ts).
 */
async function relayView(env: Env, scope: Scope): Promise<RelayView> {
  if (scope === null) return asRegistered;
  const path = await relayLinkPath(tokenSecrets(env), scope);
  return (ref) => ({ ...ref, url: linkUrl(ref.url, path) });
}

/** Refuses a malformed context (its source URL or address) naming the field, before anything is stored. */
function checkContext(context: ScopedNamespaceRequest["context"]): void {
  originOf(context);
}

/** The call's context; a source named at a relay-link URL is the relay it stands for, so it is excluded as such. */
function sourceOf(context: ScopedNamespaceRequest["context"]): Origin {
  const origin = originOf(context);
  return origin.sourceUrl === undefined ? origin : { ...origin, sourceUrl: withoutLinkPath(origin.sourceUrl) };
}

/**
 * A Lookup/LookupTrack answer: the asked namespace cut to the registration's
 * depth, at its relay; NOT_FOUND for none. Plain data (connect-es makes the
 * message; the binary fast path encodes it directly).
 */
async function originOfMatch(env: Env, scope: Scope, fields: Uint8Array[], m: RouteMatch | null, caller: Caller): Promise<OriginAnswer> {
  if (!m) throw new ConnectError("no relay has registered this namespace or a prefix of it", Code.NotFound);
  if (m.otherDraft) {
    // Drafts do not interoperate: dialling the host would hang or be refused.
    throw new ConnectError(
      `the relay hosting this namespace speaks MoQT ${m.otherDraft.join(", ")}, which this relay (${caller.versions?.join(", ")}) cannot reach`,
      Code.NotFound,
    );
  }
  const relay = (await relayView(env, scope))(m.addr === undefined ? { url: m.url } : { url: m.url, addr: m.addr });
  return { namespace: { fields: fields.slice(0, m.depth) }, relay };
}

/** What every scoped call starts with: the caller, the validated scope and its object. */
function scoped(req: { scope?: string }, ctx: HandlerContext) {
  const env = envOf(ctx);
  const caller = callerOf(ctx);
  const scope = scopeOf(env, req.scope);
  return { env, caller, scope, object: scopeStub(env, scope) };
}

/** Lookup: for connect's handler below and the binary fast path (coordinatorFastPath). */
async function lookup(env: Env, caller: Caller, req: ScopedNamespaceRequest): Promise<{ origin: OriginAnswer }> {
  const scope = scopeOf(env, req.scope);
  const fields = checkNamespace("namespace", req.namespace);
  const match = await scopeStub(env, scope).lookup(encodeTuple(fields), caller.versions);
  return { origin: await originOfMatch(env, scope, fields, match, caller) };
}

/** RegisterNamespace: for connect's handler below and the binary fast path. */
async function registerNamespace(env: Env, caller: Caller, req: ScopedNamespaceRequest): Promise<{ registrationId: string }> {
  const scope = scopeOf(env, req.scope);
  const fields = checkNamespace("namespace", req.namespace);
  checkContext(req.context);
  const { id } = unwrap(await scopeStub(env, scope).registerNamespace(scope, caller, encodeTuple(fields)));
  return { registrationId: id };
}

/**
 * Binary calls of these methods skip protobuf-es's reflection and connect-es's
 * invocation (rpc/fast-wire.ts says why); the pipeline still applies every
 * other step, token claims and shedding included.
 */
export const coordinatorFastPath: FastPath = new Map([
  [
    CoordinatorService.method.lookup.name,
    fastMethod({
      read: (bytes) => readScopedNamespaceRequest(bytes, false),
      serve: lookup,
      write: (answer) => writeLookupResponse(answer.origin),
    }),
  ],
  [
    CoordinatorService.method.registerNamespace.name,
    fastMethod({
      read: (bytes) => readScopedNamespaceRequest(bytes, true),
      serve: registerNamespace,
      write: writeRegisterNamespaceResponse,
    }),
  ],
]);

/** A (namespace, track) pair, validated. */
function trackOf(req: { namespace?: Namespace; track: string }) {
  return { fields: checkNamespace("namespace", req.namespace), track: checkTrack("track", req.track) };
}

export const coordinatorService: ServiceImpl<typeof CoordinatorService> = {
  async resolveScope(req, ctx) {
    const env = envOf(ctx);
    requireRelayCaller(ctx);
    const normalized = normalizeConnectionPath(req.connectionPath);
    if (normalized.kind === "invalid") throw invalid("connection_path", normalized.reason);
    if (normalized.kind === "none") return {};
    if (isRelayLinkPath(normalized.path)) {
      // The token's scope claims are checked on this answer by auth/claims.ts.
      const scope = await verifyRelayLinkPath(tokenSecrets(env), normalized.path);
      return { scope: create(ScopeInfoSchema, { scopeId: scope, permissions: Permissions.READ_WRITE }), relayLink: true };
    }
    const mapping = await pathStub(env, normalized.path).get();
    if (!mapping) throw new ConnectError(`connection_path: no scope is mapped to ${normalized.path}`, Code.NotFound);
    return { scope: create(ScopeInfoSchema, { scopeId: mapping.scope, permissions: mapping.permissions as Permissions }) };
  },

  async getScopeConfig(req, ctx) {
    return { config: scopeConfigMsg(await scoped(req, ctx).object.getConfig()) };
  },

  registerNamespace: (req, ctx) => registerNamespace(envOf(ctx), callerOf(ctx), req),

  async unregisterNamespace(req, ctx) {
    const { caller, object } = scoped(req, ctx);
    const fields = checkNamespace("namespace", req.namespace);
    unwrap(await object.unregisterNamespace(caller.relay, encodeTuple(fields)));
    return {};
  },

  lookup: (req, ctx) => lookup(envOf(ctx), callerOf(ctx), req),

  async lookupTrack(req, ctx) {
    const { env, caller, scope, object } = scoped(req, ctx);
    const { fields, track } = trackOf(req);
    const match = await object.lookupTrack(encodeTuple(fields), track, caller.versions);
    return { origin: await originOfMatch(env, scope, fields, match, caller) };
  },

  async subscribeNamespace(req, ctx) {
    const { env, caller, scope, object } = scoped(req, ctx);
    const prefix = checkNamespace("prefix", req.prefix, { allowEmpty: true });
    const origin = sourceOf(req.context);
    const { id, upstream } = unwrap(await object.subscribeNamespace(scope, caller, prefix, origin));
    return { subscriptionId: id, upstreamRelays: upstream.map(await relayView(env, scope)) };
  },

  async unsubscribeNamespace(req, ctx) {
    const { caller, object } = scoped(req, ctx);
    const prefix = checkNamespace("prefix", req.prefix, { allowEmpty: true });
    unwrap(await object.unsubscribeNamespace(caller.relay, prefix));
    return {};
  },

  async lookupNamespaceSubscribers(req, ctx) {
    const { env, caller, scope, object } = scoped(req, ctx);
    const fields = checkNamespace("namespace", req.namespace);
    const origin = sourceOf(req.context);
    const relays = await object.lookupNamespaceSubscribers(caller.relay, fields, origin, caller.versions);
    return { relays: relays.map(await relayView(env, scope)) };
  },

  async registerTrack(req, ctx) {
    const { caller, scope, object } = scoped(req, ctx);
    const { fields, track } = trackOf(req);
    const { id } = unwrap(await object.registerTrack(scope, caller, fields, track));
    return { registrationId: id };
  },

  async unregisterTrack(req, ctx) {
    const { caller, object } = scoped(req, ctx);
    const { fields, track } = trackOf(req);
    unwrap(await object.unregisterTrack(caller.relay, fields, track));
    return {};
  },

  async listTracks(req, ctx) {
    const { env, object } = scoped(req, ctx);
    const fields = checkNamespace("namespace", req.namespace);
    // The trait's list_tracks has no paging: refuse an oversized answer rather than truncate it silently.
    const cap = limitsOf(env).listTracks;
    const names = await object.listTracks(fields, cap + 1);
    if (names.length > cap) {
      throw new ConnectError(
        `namespace: more than ${cap} tracks are registered under it; ListTracks returns at most ${cap} (MAX_LIST_TRACKS)`,
        Code.ResourceExhausted,
      );
    }
    const namespace = namespaceMsg(fields);
    return { tracks: names.map((name) => create(TrackEntrySchema, { namespace, name })) };
  },

  async subscribeTrack(req, ctx) {
    const { caller, scope, object } = scoped(req, ctx);
    const { fields, track } = trackOf(req);
    const { id } = unwrap(await object.subscribeTrack(scope, caller, fields, track));
    return { subscriptionId: id };
  },

  async unsubscribeTrack(req, ctx) {
    const { caller, object } = scoped(req, ctx);
    const { fields, track } = trackOf(req);
    unwrap(await object.unsubscribeTrack(caller.relay, fields, track));
    return {};
  },

  async lookupTrackSubscribers(req, ctx) {
    const { env, caller, scope, object } = scoped(req, ctx);
    const { fields, track } = trackOf(req);
    const relays = await object.lookupTrackSubscribers(fields, track, caller.versions);
    return { relays: relays.map(await relayView(env, scope)) };
  },

  async heartbeat(req, ctx) {
    const caller = callerOf(ctx);
    const beat = checkBeat(req, caller.epoch);
    return unwrap(
      await relayStub(envOf(ctx), caller.relay).heartbeat(
        caller.relay,
        beat.epoch,
        beat.addrs,
        caller.issuedAtMs,
        beat.activity,
        caller.versions,
        beat.freshPeers,
        beat.peersVersion,
        beat.peersInParts,
      ),
    );
  },

  async listPeers(req, ctx) {
    const env = envOf(ctx);
    const caller = callerOf(ctx);
    return unwrap(await peerShardStub(env, peerShardOf(env, caller.relay)).page(Number(req.peersVersion), req.after, caller.relay));
  },

  async shutdown(_req, ctx) {
    const env = envOf(ctx);
    const caller = callerOf(ctx);
    // With the caller's epoch, so an old process leaving late cannot drop its successor's state.
    await relayStub(env, caller.relay).shutdown(caller.epoch);
    return {};
  },
};
