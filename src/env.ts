import type { ScopeObject } from "./objects/scope.js";
import type { RelayObject } from "./objects/relay.js";
import type { PathObject } from "./objects/path.js";

export interface Env {
  SCOPES: DurableObjectNamespace<ScopeObject>;
  RELAYS: DurableObjectNamespace<RelayObject>;
  PATHS: DurableObjectNamespace<PathObject>;
  /** Bearer token of the AdminService. Unset = admin calls refused. */
  ADMIN_TOKEN?: string;
  /** HMAC secret that signs relay tokens. Unset = relay calls refused. */
  TOKEN_SECRET?: string;
  /** "true" lets relays make calls without a scope. */
  ALLOW_UNSCOPED?: string;
  /** Relay lease TTL in milliseconds (default 10000). */
  LEASE_TTL_MS?: string;
}
