// Between protobuf messages and the plain data the Durable Objects take.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import {
  type Context,
  Interface,
  NamespaceSchema,
  RelayInfoSchema,
  type Namespace,
  type RelayInfo,
} from "../gen/moqworker/v1/coordinator_pb.js";
import type { Env } from "../env.js";
import type { Origin, Outcome, RelayRef } from "../objects/types.js";
import { type Scope, scopeFromField, UNSCOPED } from "../objects/scope-name.js";
import { checkRelayUrl, checkScopeName, checkSocketAddr } from "../model/validate.js";
import { callerKey, envKey, type Caller } from "./context.js";
import { flagSetting } from "../settings.js";

export function envOf(ctx: HandlerContext): Env {
  const env = ctx.values.get(envKey);
  if (!env) throw new ConnectError("worker env missing", Code.Internal);
  return env;
}

/** Refuses a call that reached a relay's handler without a relay identity. */
export function requireRelayCaller(ctx: HandlerContext): void {
  callerOf(ctx);
}

export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new ConnectError("no relay identity", Code.Unauthenticated);
  return caller;
}

/** A request's scope field, validated: absent is the unscoped space (refused unless ALLOW_UNSCOPED). */
export function scopeOf(env: Env, scope: string | undefined): Scope {
  const field = scopeFromField(scope);
  if (field === UNSCOPED) {
    if (!flagSetting(env, "ALLOW_UNSCOPED")) {
      throw new ConnectError("scope: required (unscoped sessions are disabled by ALLOW_UNSCOPED)", Code.PermissionDenied);
    }
    return UNSCOPED;
  }
  return checkScopeName("scope", field);
}

export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  throw new ConnectError(outcome.message, outcome.code);
}

export function originOf(context: Pick<Context, "interface" | "sourceUrl" | "sourceAddr"> | undefined): Origin {
  return {
    internal: context?.interface === Interface.INTERNAL,
    sourceUrl: context?.sourceUrl === undefined ? undefined : checkRelayUrl("context.source_url", context.sourceUrl),
    sourceAddr: context?.sourceAddr === undefined ? undefined : checkSocketAddr("context.source_addr", context.sourceAddr),
  };
}

export const namespaceMsg = (fields: Uint8Array[]): Namespace => create(NamespaceSchema, { fields });

export const relayMsg = (ref: RelayRef): RelayInfo => create(RelayInfoSchema, ref);
