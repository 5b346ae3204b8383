// Quotas and answer caps, from Worker variables (SECURITY.md "Limits").
// Quotas are per relay per scope: a broken or hostile relay fills only its own
// share of a scope, never the whole Durable Object. A variable that is unset
// or not a positive integer gets the default.
import type { Env } from "./env.js";

export interface Limits {
  /** MAX_NAMESPACES_PER_RELAY: namespaces one relay may hold in one scope. */
  namespacesPerRelay: number;
  /** MAX_TRACKS_PER_RELAY: tracks one relay may hold in one scope. */
  tracksPerRelay: number;
  /** MAX_SUBSCRIPTIONS_PER_RELAY: namespace subscriptions, and separately lingering track subscriptions, per relay per scope. */
  subscriptionsPerRelay: number;
  /** MAX_LIST_TRACKS: most tracks ListTracks returns; a namespace with more is RESOURCE_EXHAUSTED. */
  listTracks: number;
  /** MAX_WATCHERS_PER_SCOPE: watch sockets open at once on one scope (GET /v1/watch); one more is RESOURCE_EXHAUSTED. */
  watchersPerScope: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = {
  namespacesPerRelay: 10_000,
  tracksPerRelay: 10_000,
  subscriptionsPerRelay: 10_000,
  listTracks: 1_000,
  watchersPerScope: 10_000,
};

function positive(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== "" && Number.isSafeInteger(n) && n > 0 ? n : fallback;
}

export function limitsOf(env: Env): Limits {
  return {
    namespacesPerRelay: positive(env.MAX_NAMESPACES_PER_RELAY, DEFAULT_LIMITS.namespacesPerRelay),
    tracksPerRelay: positive(env.MAX_TRACKS_PER_RELAY, DEFAULT_LIMITS.tracksPerRelay),
    subscriptionsPerRelay: positive(env.MAX_SUBSCRIPTIONS_PER_RELAY, DEFAULT_LIMITS.subscriptionsPerRelay),
    listTracks: positive(env.MAX_LIST_TRACKS, DEFAULT_LIMITS.listTracks),
    watchersPerScope: positive(env.MAX_WATCHERS_PER_SCOPE, DEFAULT_LIMITS.watchersPerScope),
  };
}
