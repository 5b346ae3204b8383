// Which branch of a scope's watch channel a relay's socket goes to, and how
// many sockets a branch takes. A relay keeps its branch while WATCH_BRANCHES
// is unchanged; after a change, new sockets spread by the new count and the
// old branches keep theirs (the root sends to every attached branch).
import type { Env } from "../env.js";
import { limitsOf } from "../limits.js";
import { bucketOf } from "../model/hash.js";
import { type Scope, scopeObjectName } from "../objects/scope-name.js";
import { integerSetting } from "../settings.js";

/** Hibernatable sockets one object may hold (the runtime's limit is 32,768). */
const MAX_SOCKETS_PER_OBJECT = 32_000;

/** The branch (0 .. branches-1) of a relay, by a hash of its URL: stable across isolates and deploys. */
export function branchIndex(relay: string, branches: number): number {
  return bucketOf(relay, branches);
}

/** The WatchBranchObject's name. Persistent (it picks the object): never change it. */
export function watchBranchName(scope: Scope, index: number): string {
  return `${index}@${scopeObjectName(scope)}`;
}

/** The relay's branch of the scope under the current WATCH_BRANCHES. */
export function branchOf(env: Env, scope: Scope, relay: string): string {
  return watchBranchName(scope, branchIndex(relay, integerSetting(env, "WATCH_BRANCHES")));
}

/** Sockets one branch admits: its share of MAX_WATCHERS_PER_SCOPE, within the runtime's limit. */
export function branchCapacity(env: Env): number {
  return Math.min(MAX_SOCKETS_PER_OBJECT, Math.ceil(limitsOf(env).watchersPerScope / integerSetting(env, "WATCH_BRANCHES")));
}
