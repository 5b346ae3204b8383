// Plain data passed between the Worker and its Durable Objects (structured clone).
import type { Code } from "@connectrpc/connect";
import type { Policy } from "../model/auth-policy.js";

export interface RelayRef {
  url: string;
  addr?: string;
}

/**
 * A calling relay as the objects see it: its URL (from its token), and what
 * its process said of itself. The pipeline's Caller (rpc/context.ts) is this
 * plus the token's narrowing claims.
 */
export interface RelayIdentity {
  relay: string;
  epoch?: string;
  /** The MoQT versions it speaks, if it said (model/moqt-version.ts). */
  versions?: string[];
  /** When the caller's token was made (ms): its RelayObject refuses a revoked one. */
  issuedAtMs: number;
}

/** CoordinatorContext of the call. */
export interface Origin {
  internal: boolean;
  sourceUrl?: string;
  sourceAddr?: string;
}

export interface ScopeSettings {
  originFallback?: string;
  lingeringSubscribe: boolean;
  rendezvousTimeoutMs?: number;
  /** The token policy: absent = none (model/auth-policy.ts). In answers the Worker's keys are joined in. */
  auth?: Policy;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: Code; message: string };

export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
export const fail = <T = never>(code: Code, message: string): Outcome<T> => ({ ok: false, code, message });
