// A scope's settings as the contract's ScopeConfig: GetScopeConfig answers it
// to relays, DescribeScope to operators (the same message, never a private key).
import { create } from "@bufbuild/protobuf";
import { type AuthKey, AuthKeySchema, type ScopeConfig, ScopeConfigSchema } from "../gen/moqworker/v1/coordinator_pb.js";
import { type PolicyKey, ttlOf } from "../model/auth-policy.js";
import type { ScopeSettings } from "../objects/types.js";

export function authKeyMsg(k: PolicyKey): AuthKey {
  return create(AuthKeySchema, {
    kid: k.kid,
    pem: k.pem,
    addedAtMs: BigInt(k.addedAtMs),
    workerHeld: k.worker !== undefined,
    signing: k.worker?.signing ?? false,
    retiresAtMs: k.worker?.retiresAtMs === undefined ? undefined : BigInt(k.worker.retiresAtMs),
  });
}

export function scopeConfigMsg(s: ScopeSettings): ScopeConfig {
  const { auth } = s;
  return create(ScopeConfigSchema, {
    originFallback: s.originFallback,
    lingeringSubscribe: s.lingeringSubscribe,
    rendezvousTimeoutMs: s.rendezvousTimeoutMs,
    auth: auth && {
      keys: auth.keys.map(authKeyMsg),
      issuers: auth.issuers,
      audiences: auth.audiences,
      clockSkewSeconds: auth.clockSkewSeconds,
      // Always said, so relays use the short default rather than their own 300 s.
      ttlSeconds: ttlOf(auth),
      enabledAtMs: auth.enabledAtMs === undefined ? undefined : BigInt(auth.enabledAtMs),
    },
  });
}
