// Per-request values handed from the HTTP layer to the Connect handlers.
import { createContextKey } from "@connectrpc/connect";
import type { Env } from "../env.js";

export const envKey = createContextKey<Env | undefined>(undefined, { description: "Worker env" });

/** The calling relay, from its verified token; set on CoordinatorService calls. */
export interface Caller {
  relay: string;
  /** Boot epoch from the Moq-Relay-Epoch header, when the relay sent one. */
  epoch?: string;
  /** MoQT versions from the Moq-Relay-Versions header, when the relay sent it (model/moqt-version.ts). */
  versions?: string[];
  /** From the token: the only scopes this caller may act in (absent = any). */
  scopes?: readonly string[];
  /** From the token: the caller may not publish. */
  readOnly?: boolean;
  /** From the token: when it was made (ms); a revocation refuses tokens made up to its instant. */
  issuedAtMs: number;
}
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "calling relay" });
