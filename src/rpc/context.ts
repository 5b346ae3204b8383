// Per-request values handed from the HTTP layer to the Connect handlers.
import { createContextKey } from "@connectrpc/connect";
import type { Env } from "../env.js";
import type { RelayIdentity } from "../objects/types.js";

export const envKey = createContextKey<Env | undefined>(undefined, { description: "Worker env" });

/**
 * The calling relay, from its verified token and its headers (epoch from
 * Moq-Relay-Epoch, versions from Moq-Relay-Versions); set on
 * CoordinatorService calls.
 */
export interface Caller extends RelayIdentity {
  /** From the token: the only scopes this caller may act in (absent = any). */
  scopes?: readonly string[];
  /** From the token: the caller may not publish. */
  readOnly?: boolean;
}
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "calling relay" });
