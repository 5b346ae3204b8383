import type { ScopeObject } from "./objects/scope.js";
import type { RelayObject } from "./objects/relay.js";
import type { PathObject } from "./objects/path.js";
import type { DirectoryObject } from "./objects/directory.js";
import type { WatchBranchObject } from "./objects/watch-branch.js";
import type { PeerShardObject } from "./objects/peer-shard.js";
import type { LeaseClockObject } from "./objects/lease-clock.js";
import type { RateLimitEnv } from "./auth/rate-limit.js";
import type { Variables } from "./settings.js";

/**
 * The Worker's bindings and variables. Variables (strings, secrets included)
 * are listed, with their defaults and meaning, in settings.ts and read only
 * through it; the rate-limit bindings are in auth/rate-limit.ts.
 */
export interface Env extends RateLimitEnv, Variables {
  SCOPES: DurableObjectNamespace<ScopeObject>;
  RELAYS: DurableObjectNamespace<RelayObject>;
  PATHS: DurableObjectNamespace<PathObject>;
  /** The admin views' list of scopes and relays (one object; never on a coordinator call's path). */
  DIRECTORY: DurableObjectNamespace<DirectoryObject>;
  /** The branches of each scope's watch channel, which hold the relays' sockets (watch/branch.ts). */
  BRANCHES: DurableObjectNamespace<WatchBranchObject>;
  /** Copies of the directory's peer list, which heartbeats read (objects/peer-shard.ts). */
  PEERS: DurableObjectNamespace<PeerShardObject>;
  /** Timers shared by relays on their lease sockets (objects/lease-clock.ts). */
  CLOCKS: DurableObjectNamespace<LeaseClockObject>;
  /** Workers Analytics Engine dataset for per-RPC metrics; optional (see docs/operating.md). */
  METRICS?: AnalyticsEngineDataset;
}
