// A scope's token policy (coordinator.proto ScopeAuth) as the Worker keeps it,
// and the checks PutScopeConfig applies to what an operator sends. The relay
// fails a whole scope closed on a key it cannot use, so a policy is refused
// here, naming the field, before any relay sees it.
import { AuthLimit, type ScopeAuth } from "../gen/moqworker/v1/coordinator_pb.js";
import { invalid } from "./validate.js";

/** One verification key; `worker`: the Worker holds its private half (auth/scope-keys.ts). */
export interface PolicyKey {
  kid: string;
  pem: string;
  addedAtMs: number;
  worker?: { signing: boolean; retiresAtMs?: number };
}

/** The operator's part of a policy (the Worker's keys are stored apart, in the scope's signing_keys). */
export interface OperatorPolicy {
  keys: PolicyKey[];
  issuers: string[];
  audiences: string[];
  clockSkewSeconds?: number;
  ttlSeconds?: number;
  /** When the policy was turned on (set by the ScopeObject). */
  enabledAtMs?: number;
}

/** The policy relays enforce: the operator's part with the Worker's keys joined, newest first. */
export type Policy = OperatorPolicy;

/** TTL handed to relays when the policy names none: short, since the edge answers from its push-kept cache. */
export const DEFAULT_POLICY_TTL_SECONDS = 5;

const KID = /^[\x21-\x7e]+$/;
const PEM = /^-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----\s*$/;

export function checkKid(field: string, kid: string): string {
  if (kid.length === 0 || kid.length > AuthLimit.MAX_KID_CHARS || !KID.test(kid)) {
    throw invalid(field, `must be 1 to ${AuthLimit.MAX_KID_CHARS} printable ASCII characters without spaces`);
  }
  return kid;
}

/** The DER of a PEM block labelled PUBLIC KEY; a private key or anything else is refused naming `field`. */
function spkiOf(field: string, pem: string): Uint8Array {
  const m = PEM.exec(pem.trim());
  if (!m) throw invalid(field, "is not a PEM block (-----BEGIN PUBLIC KEY----- … -----END PUBLIC KEY-----)");
  if (m[1].includes("PRIVATE")) throw invalid(field, "is a private key: give only its public half (-----BEGIN PUBLIC KEY-----)");
  if (m[1] !== "PUBLIC KEY") throw invalid(field, `is a ${m[1]}, not a PUBLIC KEY (SubjectPublicKeyInfo)`);
  try {
    return Uint8Array.from(atob(m[2].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw invalid(field, "is not valid base64 inside the PEM block");
  }
}

/** DER as PEM the strict way (RFC 7468): 64-character lines, as the relay's parser requires. */
export function pemOf(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END ${label}-----`;
}

/**
 * Refuses anything but a P-256 (ES256) public key in SPKI PEM, naming
 * `field`; the key rewritten as strict PEM (a relay refuses a whole scope
 * over a key wrapped at another width, or on one line).
 */
export async function checkEs256Pem(field: string, pem: string): Promise<string> {
  const der = spkiOf(field, pem);
  try {
    await crypto.subtle.importKey("spki", der, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  } catch {
    throw invalid(field, "is not a P-256 (ES256) public key");
  }
  return pemOf("PUBLIC KEY", der);
}

function checkNames(field: string, names: string[]): string[] {
  if (names.length > AuthLimit.MAX_NAMES) throw invalid(field, `has more than ${AuthLimit.MAX_NAMES} entries`);
  names.forEach((n, i) => {
    if (n.length === 0 || n.length > AuthLimit.MAX_NAME_CHARS) {
      throw invalid(`${field}[${i}]`, `must be 1 to ${AuthLimit.MAX_NAME_CHARS} characters`);
    }
  });
  return [...new Set(names)];
}

/**
 * An operator's policy from PutScopeConfig, checked (keys marked worker_held
 * are the Worker's own and are skipped: RotateScopeKey manages those). `workerKids`:
 * the scope's Worker keys, which share the kid space and the key budget.
 */
export async function checkPolicy(
  auth: ScopeAuth,
  workerKids: readonly string[],
  previous: OperatorPolicy | undefined,
  now: number,
): Promise<OperatorPolicy> {
  const given = auth.keys.map((k, i) => ({ k, field: `config.auth.keys[${i}]` })).filter(({ k }) => !k.workerHeld);
  const total = given.length + workerKids.length;
  if (total === 0) {
    throw invalid("config.auth.keys", "must hold at least 1 key (or make one held by the Worker with RotateScopeKey first)");
  }
  if (total > AuthLimit.MAX_KEYS) {
    throw invalid("config.auth.keys", `holds ${total} keys with the Worker's ${workerKids.length}; at most ${AuthLimit.MAX_KEYS}`);
  }
  const seen = new Set(workerKids);
  const keys: PolicyKey[] = [];
  for (const { k, field } of given) {
    const kid = checkKid(`${field}.kid`, k.kid);
    if (seen.has(kid)) throw invalid(`${field}.kid`, `'${kid}' is used by another key of the scope`);
    seen.add(kid);
    const pem = await checkEs256Pem(`${field}.pem`, k.pem);
    // A key already in the policy keeps when it was added.
    const before = previous?.keys.find((p) => p.kid === kid && p.pem === pem);
    keys.push({ kid, pem, addedAtMs: before?.addedAtMs ?? now });
  }
  const skew = auth.clockSkewSeconds;
  if (skew !== undefined && skew > AuthLimit.MAX_CLOCK_SKEW_SECONDS) {
    throw invalid("config.auth.clock_skew_seconds", `must be at most ${AuthLimit.MAX_CLOCK_SKEW_SECONDS} (the relay's cap)`);
  }
  const ttl = auth.ttlSeconds;
  if (ttl !== undefined && (ttl < 1 || ttl > AuthLimit.MAX_TTL_SECONDS)) {
    throw invalid("config.auth.ttl_seconds", `must be between 1 and ${AuthLimit.MAX_TTL_SECONDS}`);
  }
  return {
    keys,
    issuers: checkNames("config.auth.issuers", auth.issuers),
    audiences: checkNames("config.auth.audiences", auth.audiences),
    clockSkewSeconds: skew,
    ttlSeconds: ttl,
  };
}

/** Seconds a relay tolerates around exp and nbf under this policy (the relay's default when unset). */
export function skewOf(policy: Pick<OperatorPolicy, "clockSkewSeconds">): number {
  return policy.clockSkewSeconds ?? 60;
}

/** Seconds a relay may reuse the policy. */
export function ttlOf(policy: Pick<OperatorPolicy, "ttlSeconds">): number {
  return policy.ttlSeconds ?? DEFAULT_POLICY_TTL_SECONDS;
}
