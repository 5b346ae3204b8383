// The one place that turns a name into a Durable Object stub. Object names are
// persistent: the same name must always reach the same object.
import { setBounded } from "../auth/bounded-cache.js";
import type { Env } from "../env.js";
import { billing, type ObjectKind } from "../metrics/billing.js";
import { type Scope, scopeObjectName } from "./scope-name.js";

/** Ids kept per namespace binding (an id is ~100 bytes). */
const MAX_CACHED_IDS = 4096;
const ids = new WeakMap<object, Map<string, DurableObjectId>>();

/**
 * The object named `name`, its id made once per isolate: idFromName hashes
 * the name every time (a visible share of a Lookup's CPU: docs/performance.md,
 * "Pipeline"), and a name's id never
 * changes. Stubs are made per call (a stub belongs to its request; the billing
 * counter counts each as one request), never kept for a second call.
 */
function stubOf<T extends Rpc.DurableObjectBranded | undefined>(
  ns: DurableObjectNamespace<T>,
  name: string,
  kind: ObjectKind,
): DurableObjectStub<T> {
  let byName = ids.get(ns);
  if (!byName) {
    byName = new Map();
    ids.set(ns, byName);
  }
  let id = byName.get(name);
  if (!id) {
    id = ns.idFromName(name);
    setBounded(byName, name, id, MAX_CACHED_IDS);
  }
  // One call per stub: each is one billed request to the object.
  billing.objectRequest(kind, name);
  return ns.get(id);
}

/** The ScopeObject of a scope or of the unscoped space. */
export const scopeStub = (env: Env, scope: Scope) => stubOf(env.SCOPES, scopeObjectName(scope), "ScopeObject");

/** The RelayObject of a relay, by its URL. */
export const relayStub = (env: Env, url: string) => stubOf(env.RELAYS, url, "RelayObject");

/** The PathObject of a normalised connection path. */
export const pathStub = (env: Env, path: string) => stubOf(env.PATHS, path, "PathObject");

/** A branch of a scope's watch channel, by its name (watch/branches.ts). */
export const watchBranchStub = (env: Env, name: string) => stubOf(env.BRANCHES, name, "WatchBranchObject");

/** A peer-list shard, by its name (objects/peer-shard.ts). */
export const peerShardStub = (env: Env, name: string) => stubOf(env.PEERS, name, "PeerShardObject");

/** A lease clock, by its name (objects/lease-clock.ts). */
export const leaseClockStub = (env: Env, name: string) => stubOf(env.CLOCKS, name, "LeaseClockObject");

/** The one DirectoryObject. */
export const directoryStub = (env: Env) => stubOf(env.DIRECTORY, "directory", "DirectoryObject");
