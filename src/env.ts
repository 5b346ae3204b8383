import type { ScopeObject } from "./objects/scope.js";
import type { RelayObject } from "./objects/relay.js";
import type { PathObject } from "./objects/path.js";
import type { DirectoryObject } from "./objects/directory.js";

export interface Env {
  SCOPES: DurableObjectNamespace<ScopeObject>;
  RELAYS: DurableObjectNamespace<RelayObject>;
  PATHS: DurableObjectNamespace<PathObject>;
  /** The admin views' list of scopes and relays (one object; never on a coordinator call's path). */
  DIRECTORY: DurableObjectNamespace<DirectoryObject>;
  /** Workers Analytics Engine dataset for per-RPC metrics; optional (see docs/operating.md). */
  METRICS?: AnalyticsEngineDataset;
  /** Bearer token of the AdminService. Unset = admin calls refused. */
  ADMIN_TOKEN?: string;
  /** HMAC secret that signs relay tokens. Unset = relay calls refused. */
  TOKEN_SECRET?: string;
  /** The secret TOKEN_SECRET replaced: its tokens still verify until it is removed (rotation, SECURITY.md). */
  TOKEN_SECRET_PREVIOUS?: string;
  /** "true" lets relays make calls without a scope. */
  ALLOW_UNSCOPED?: string;
  /** Relay lease TTL in milliseconds (default 10000). */
  LEASE_TTL_MS?: string;
  /** Quotas per relay per scope and the ListTracks cap (src/limits.ts; defaults 10000, 10000, 10000, 1000). */
  MAX_NAMESPACES_PER_RELAY?: string;
  MAX_TRACKS_PER_RELAY?: string;
  MAX_SUBSCRIPTIONS_PER_RELAY?: string;
  MAX_LIST_TRACKS?: string;
  /** Watch sockets open at once per scope (default 10000). */
  MAX_WATCHERS_PER_SCOPE?: string;
}
