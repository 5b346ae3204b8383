// Rate limits per caller identity, with Cloudflare's rate-limiting binding
// (wrangler.toml [[ratelimits]]; SECURITY.md "Rate limits"). Three buckets:
//   RELAY_RATE_LIMIT      every CoordinatorService call of a relay but Heartbeat,
//                         keyed by the relay URL of its verified token;
//   HEARTBEAT_RATE_LIMIT  a relay's Heartbeats, alone: a flood of other calls
//                         spends the relay's call bucket, never its lease;
//   ADMIN_RATE_LIMIT      admin calls and /metrics, keyed by the admin token
//                         presented (current or previous, auth/bearer.ts).
// A binding that is not configured limits nothing (bare workerd in bench/).
// The binding counts per Cloudflare location and is eventually consistent: a
// limit stops floods, it is not an exact quota.
import { Code, ConnectError } from "@connectrpc/connect";
import { CoordinatorService } from "../gen/moqworker/v1/coordinator_pb.js";
import { rpcMetrics } from "../metrics/registry.js";
import { integerSetting, type Variables } from "../settings.js";

export interface RateLimitEnv extends Pick<Variables, "RATE_LIMIT_PERIOD_SECONDS"> {
  RELAY_RATE_LIMIT?: RateLimit;
  HEARTBEAT_RATE_LIMIT?: RateLimit;
  ADMIN_RATE_LIMIT?: RateLimit;
}

/** Which bucket a call is counted in. */
export type Bucket = "relay" | "heartbeat" | "admin";

const HEARTBEAT = CoordinatorService.method.heartbeat.name;

/** The retry hint, in seconds: RATE_LIMIT_PERIOD_SECONDS, the bindings' period. */
export function periodSeconds(env: RateLimitEnv): number {
  return integerSetting(env, "RATE_LIMIT_PERIOD_SECONDS");
}

/** The bucket of a relay's call to `method` (a method name, or anything a caller sent). */
export const relayBucket = (method: string): Bucket => (method === HEARTBEAT ? "heartbeat" : "relay");

function binding(env: RateLimitEnv, bucket: Bucket): RateLimit | undefined {
  return bucket === "relay" ? env.RELAY_RATE_LIMIT : bucket === "heartbeat" ? env.HEARTBEAT_RATE_LIMIT : env.ADMIN_RATE_LIMIT;
}

/**
 * Counts one call of `key` in `bucket`; past the limit throws
 * RESOURCE_EXHAUSTED with a Retry-After header (the window is at most one
 * period long). A limiter that fails lets the call through: its outage must
 * not become the control plane's.
 */
export async function enforceRateLimit(env: RateLimitEnv, bucket: Bucket, key: string, who: string): Promise<void> {
  const limiter = binding(env, bucket);
  if (!limiter) return;
  let success: boolean;
  try {
    ({ success } = await limiter.limit({ key: `${bucket}:${key}` }));
  } catch (err) {
    console.warn(`rate limit ${bucket}: limiter failed, call let through: ${String(err)}`);
    return;
  }
  if (success) return;
  rpcMetrics.refused(bucket);
  const retry = periodSeconds(env);
  const what = bucket === "heartbeat" ? "heartbeats" : "calls";
  throw new ConnectError(
    `rate limit exceeded: too many ${what} from ${who} (${bucket} bucket); retry after ${retry} s`,
    Code.ResourceExhausted,
    { "retry-after": String(retry) },
  );
}
