// Scope signing keys the Worker holds (AdminService.RotateScopeKey): ES256 key
// pairs made here, whose private half is stored only sealed (AES-256-GCM under
// a key derived from TOKEN_SECRET, bound to its scope and kid) and used only
// inside the Worker to sign tokens (AdminService.IssueToken). Rotating
// TOKEN_SECRET keeps them usable while the old secret is TOKEN_SECRET_PREVIOUS.
import { Code, ConnectError } from "@connectrpc/connect";
import { setBounded } from "./bounded-cache.js";
import { toBase64Url } from "../model/base64url.js";
import { pemOf } from "../model/auth-policy.js";

const utf8 = new TextEncoder();
const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const IV_BYTES = 12;
/** Unsealed keys kept per isolate (a few hundred bytes each). */
const MAX_CACHED_KEYS = 256;

export interface NewScopeKey {
  kid: string;
  /** SubjectPublicKeyInfo, PEM. */
  pem: string;
  /** The PKCS#8 private key, sealed. */
  sealed: Uint8Array;
}

const sealingKeys = new Map<string, Promise<CryptoKey>>();
const unsealed = new Map<string, Promise<CryptoKey>>();

function sealingKey(secret: string): Promise<CryptoKey> {
  let key = sealingKeys.get(secret);
  if (!key) {
    key = (async () => {
      const ikm = await crypto.subtle.importKey("raw", utf8.encode(secret), "HKDF", false, ["deriveKey"]);
      return crypto.subtle.deriveKey(
        { name: "HKDF", hash: "SHA-256", salt: utf8.encode("moq-worker"), info: utf8.encode("scope signing keys v1") },
        ikm,
        { name: "AES-GCM", length: 256 },
        false,
        ["encrypt", "decrypt"],
      );
    })();
    setBounded(sealingKeys, secret, key, 4);
  }
  return key;
}

/** What a sealed key is bound to: moving it to another scope or kid breaks it. */
const boundTo = (scopeName: string, kid: string) => utf8.encode(`${scopeName}\0${kid}`);

/** A new key pair for `scopeName` (an object name, objects/scope-name.ts), its private half sealed with `secret`. */
export async function makeScopeKey(secret: string, scopeName: string): Promise<NewScopeKey> {
  const pair = (await crypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = (await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer;
  const pkcs8 = (await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer;
  const kid = `w-${toBase64Url(crypto.getRandomValues(new Uint8Array(9)))}`;
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: boundTo(scopeName, kid) }, await sealingKey(secret), pkcs8);
  const sealed = new Uint8Array(IV_BYTES + ct.byteLength);
  sealed.set(iv);
  sealed.set(new Uint8Array(ct), IV_BYTES);
  return { kid, pem: pemOf("PUBLIC KEY", spki), sealed };
}

/** The signing key of a sealed private half, trying each secret (current first). */
export function unsealScopeKey(secrets: string[], scopeName: string, kid: string, sealed: Uint8Array): Promise<CryptoKey> {
  const id = `${scopeName}\0${kid}\0${toBase64Url(sealed)}`;
  let key = unsealed.get(id);
  if (!key) {
    key = open(secrets, scopeName, kid, sealed);
    // A failure is not cached: a secret may be set again.
    key.catch(() => unsealed.delete(id));
    setBounded(unsealed, id, key, MAX_CACHED_KEYS);
  }
  return key;
}

async function open(secrets: string[], scopeName: string, kid: string, sealed: Uint8Array): Promise<CryptoKey> {
  const iv = sealed.slice(0, IV_BYTES);
  const ct = sealed.slice(IV_BYTES);
  for (const secret of secrets) {
    let pkcs8: ArrayBuffer;
    try {
      pkcs8 = await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: boundTo(scopeName, kid) }, await sealingKey(secret), ct);
    } catch {
      continue;
    }
    return crypto.subtle.importKey("pkcs8", pkcs8, ECDSA_P256, false, ["sign"]);
  }
  throw new ConnectError(
    `scope key ${kid} was sealed with a TOKEN_SECRET that is neither TOKEN_SECRET nor TOKEN_SECRET_PREVIOUS now: make a new one with RotateScopeKey`,
    Code.FailedPrecondition,
  );
}
