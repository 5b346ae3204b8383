// Overload: a scope's Durable Object runs one call at a time, so a scope that
// gets more calls than it can serve builds a queue in front of it. Two rules
// keep that from turning into hangs, 500s or slow neighbours:
//
// - Load shedding. Each isolate counts the calls it has in flight per scope;
//   past MAX_INFLIGHT_PER_SCOPE, a call is refused at once with UNAVAILABLE
//   and `Retry-After: 1`, before it costs the object anything. UNAVAILABLE is
//   what relays retry with backoff (edge/src/rpc.rs RetryPolicy), so a hot
//   scope sheds load onto its callers' backoff instead of onto everyone
//   sharing the isolate. Heartbeat and Shutdown name no scope and are never
//   shed (a relay's lease must not lapse because a scope is busy).
// - Runtime errors from an object stub (the object is overloaded, was reset,
//   or the connection to it was lost) are retryable by the runtime's own
//   account (`overloaded`, `retryable` on the error): they answer UNAVAILABLE,
//   everything else stays INTERNAL.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { integerSetting, SETTINGS } from "../settings.js";

/** Calls one isolate lets wait on one scope's object at once, unless MAX_INFLIGHT_PER_SCOPE says otherwise. */
export const DEFAULT_MAX_INFLIGHT_PER_SCOPE = SETTINGS.MAX_INFLIGHT_PER_SCOPE.default;
/** What the Retry-After header of a shed call says, in seconds. */
export const RETRY_AFTER_SECONDS = 1;

/** MAX_INFLIGHT_PER_SCOPE (0: no shedding). */
export function maxInflightPerScope(env: Pick<Env, "MAX_INFLIGHT_PER_SCOPE">): number {
  return integerSetting(env, "MAX_INFLIGHT_PER_SCOPE");
}

/** Calls in flight per scope in this isolate ("" is not a valid scope name: it keys the unscoped space). */
const inflight = new Map<string, number>();

/** How many calls this isolate has in flight on a scope (tests and metrics). */
export const inflightOn = (scope: string | undefined): number => inflight.get(scope ?? "") ?? 0;

function unavailable(message: string): ConnectError {
  return new ConnectError(message, Code.Unavailable, { "retry-after": String(RETRY_AFTER_SECONDS) });
}

/**
 * Runs a call on `scope` (a request's scope field; undefined for the unscoped
 * space) unless the isolate already has its bound of calls waiting on that
 * scope: then UNAVAILABLE at once. The interceptor below and the pipeline's
 * binary fast path (rpc/router.ts) both come through here.
 */
export async function shedding<T>(env: Env | undefined, scope: string | undefined, call: () => Promise<T>): Promise<T> {
  const max = env ? maxInflightPerScope(env) : DEFAULT_MAX_INFLIGHT_PER_SCOPE;
  if (max === 0) return call();
  const key = scope ?? "";
  const now = inflight.get(key) ?? 0;
  if (now >= max) {
    throw unavailable(`scope is overloaded: ${now} calls are already waiting on it here (MAX_INFLIGHT_PER_SCOPE); retry with backoff`);
  }
  inflight.set(key, now + 1);
  try {
    return await call();
  } finally {
    const left = (inflight.get(key) ?? 1) - 1;
    if (left === 0) inflight.delete(key);
    else inflight.set(key, left);
  }
}

/**
 * The Connect error a call answers with for an exception that is not one:
 * UNAVAILABLE (with a retry hint) when the runtime says a retry may succeed,
 * INTERNAL otherwise.
 */
export function errorOf(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  const flags = (typeof e === "object" && e !== null ? e : {}) as { overloaded?: unknown; retryable?: unknown };
  if (flags.overloaded === true) return unavailable("a Durable Object is overloaded; retry with backoff");
  if (flags.retryable === true) return unavailable("a Durable Object call failed transiently; retry with backoff");
  return new ConnectError("internal error", Code.Internal, undefined, undefined, e);
}
