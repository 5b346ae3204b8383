// Unpadded base64url (RFC 4648 §5), for page tokens and relay-link paths, on
// hono's codec. Decoding is strict: a string that is not the canonical
// encoding of its bytes is refused, so one value never has two spellings.
import { decodeBase64Url, encodeBase64Url } from "hono/utils/encode";

/** Unpadded base64url (hono's encoder pads). */
export function toBase64Url(bytes: Uint8Array): string {
  return encodeBase64Url(bytes.slice().buffer).replace(/=+$/, "");
}

/** The bytes of canonical unpadded base64url; undefined for anything else. */
export function fromBase64Url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = decodeBase64Url(text);
  } catch {
    return undefined;
  }
  // Non-canonical trailing bits would give the same bytes several spellings.
  return toBase64Url(bytes) === text ? bytes : undefined;
}
