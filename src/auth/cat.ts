// Common Access Tokens (CAT, draft-ietf-moq-c4m) as moq-relay-ietf verifies
// them: a COSE_Sign1 (CBOR tag 18) over a CWT claims map, signed with ES256.
// Claims are integer-keyed and encoded deterministically (RFC 8949 §4.2.1);
// the relay refuses claims it does not know, so only these are written.
import { encode } from "cborg";

/** CAT claim keys (RFC 8392 and draft-ietf-moq-c4m). */
const CLAIM = { iss: 1, aud: 3, exp: 4, iat: 6, cti: 7, moqt: 327 } as const;
/** COSE header labels and the ES256 algorithm (RFC 9052, RFC 9053). */
const HEADER = { alg: 1, kid: 4 } as const;
const ES256 = -7;
const COSE_SIGN1_TAG = 0xd2; // tag 18, one byte

/** MoQT actions of the moqt claim. */
export const MoqtAction = {
  ClientSetup: 0,
  PublishNamespace: 2,
  SubscribeNamespace: 3,
  Subscribe: 4,
  Publish: 6,
  Fetch: 7,
  TrackStatus: 8,
} as const;

/** What a token allows: actions on namespaces whose first fields are `namespacePrefix` (all if empty), optionally one track. */
export interface CatGrant {
  actions: number[];
  namespacePrefix: Uint8Array[];
  track?: string;
}

export interface CatClaims {
  issuer?: string;
  audience?: string;
  /** Seconds since the epoch. */
  issuedAt: number;
  expiresAt: number;
  /** A unique token id (CWT ID). */
  id: Uint8Array;
  grant: CatGrant;
}

const utf8 = new TextEncoder();

/** The moqt claim: one scope [actions, namespace matches, track match?]; each namespace field matched exactly. */
function moqtClaim(g: CatGrant): unknown[] {
  const scope: unknown[] = [[...new Set(g.actions)].sort((a, b) => a - b), g.namespacePrefix];
  if (g.track !== undefined) scope.push(utf8.encode(g.track));
  return [scope];
}

function claimsMap(c: CatClaims): Map<number, unknown> {
  const m = new Map<number, unknown>();
  if (c.issuer !== undefined) m.set(CLAIM.iss, c.issuer);
  if (c.audience !== undefined) m.set(CLAIM.aud, c.audience);
  m.set(CLAIM.exp, c.expiresAt);
  m.set(CLAIM.iat, c.issuedAt);
  m.set(CLAIM.cti, c.id);
  m.set(CLAIM.moqt, moqtClaim(c.grant));
  return m;
}

/** Signs the claims with `key` (ECDSA P-256, private): the token's bytes. */
export async function signCat(key: CryptoKey, kid: string, claims: CatClaims): Promise<Uint8Array> {
  const protectedHeader = encode(
    new Map<number, unknown>([
      [HEADER.alg, ES256],
      [HEADER.kid, utf8.encode(kid)],
    ]),
  );
  const payload = encode(claimsMap(claims));
  // Sig_structure (RFC 9052 §4.4): ["Signature1", protected, external_aad, payload].
  const toSign = encode(["Signature1", protectedHeader, new Uint8Array(0), payload]);
  // WebCrypto's ECDSA signature is r || s, the form COSE wants.
  const signature = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, toSign));
  const body = encode([protectedHeader, new Map(), payload, signature]);
  const token = new Uint8Array(body.length + 1);
  token[0] = COSE_SIGN1_TAG;
  token.set(body, 1);
  return token;
}
