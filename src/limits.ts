// Quotas and answer caps (SECURITY.md "Limits"; variables in settings.ts).
// Quotas are per relay per scope: a broken or hostile relay fills only its own
// share of a scope, never the whole Durable Object.
import type { Env } from "./env.js";
import { integerSetting, SETTINGS } from "./settings.js";

export interface Limits {
  /** MAX_NAMESPACES_PER_RELAY */
  namespacesPerRelay: number;
  /** MAX_TRACKS_PER_RELAY */
  tracksPerRelay: number;
  /** MAX_SUBSCRIPTIONS_PER_RELAY (namespace subscriptions, and separately lingering track subscriptions) */
  subscriptionsPerRelay: number;
  /** MAX_LIST_TRACKS */
  listTracks: number;
  /** MAX_WATCHERS_PER_SCOPE */
  watchersPerScope: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = {
  namespacesPerRelay: SETTINGS.MAX_NAMESPACES_PER_RELAY.default,
  tracksPerRelay: SETTINGS.MAX_TRACKS_PER_RELAY.default,
  subscriptionsPerRelay: SETTINGS.MAX_SUBSCRIPTIONS_PER_RELAY.default,
  listTracks: SETTINGS.MAX_LIST_TRACKS.default,
  watchersPerScope: SETTINGS.MAX_WATCHERS_PER_SCOPE.default,
};

export function limitsOf(env: Env): Limits {
  return {
    namespacesPerRelay: integerSetting(env, "MAX_NAMESPACES_PER_RELAY"),
    tracksPerRelay: integerSetting(env, "MAX_TRACKS_PER_RELAY"),
    subscriptionsPerRelay: integerSetting(env, "MAX_SUBSCRIPTIONS_PER_RELAY"),
    listTracks: integerSetting(env, "MAX_LIST_TRACKS"),
    watchersPerScope: integerSetting(env, "MAX_WATCHERS_PER_SCOPE"),
  };
}
