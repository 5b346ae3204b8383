// Page sizes and page tokens of the admin listings. A token is opaque to
// callers: base64url of JSON holding where each list goes on (keyset cursors,
// not offsets, so a page costs the same wherever it is).
import { decodeBase64Url, encodeBase64Url } from "hono/utils/encode";
import { invalid } from "../model/validate.js";

export const DEFAULT_PAGE = 100;

export function pageSize(requested: number, max: number): number {
  if (requested > max) throw invalid("page_size", `must be at most ${max}`);
  return requested === 0 ? DEFAULT_PAGE : requested;
}

const utf8 = new TextEncoder();

/** Unpadded base64url (hono's encoder pads). */
export function toBase64Url(bytes: Uint8Array): string {
  return encodeBase64Url(bytes.slice().buffer).replace(/=+$/, "");
}

/** Throws unless `text` is unpadded base64url. */
export function fromBase64Url(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  return decodeBase64Url(text);
}

export function encodeToken(value: unknown): string {
  return toBase64Url(utf8.encode(JSON.stringify(value)));
}

/**
 * "" → undefined (the first page). Anything `check` does not accept (it
 * returns undefined or throws) is INVALID_ARGUMENT naming page_token.
 */
export function decodeToken<T>(token: string, check: (value: unknown) => T | undefined): T | undefined {
  if (token === "") return undefined;
  let decoded: T | undefined;
  try {
    decoded = check(JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(fromBase64Url(token))));
  } catch {
    decoded = undefined;
  }
  if (decoded === undefined) throw invalid("page_token", "is not a token from a previous response of this method");
  return decoded;
}

/** Token of a list ordered by one string key: the last key returned, tagged with the list. */
export const afterToken = (list: string, after: string) => encodeToken({ list, after });

export function decodeAfterToken(list: string, token: string): string | undefined {
  return decodeToken(token, (v) => {
    const t = v as { list?: unknown; after?: unknown } | null;
    return t?.list === list && typeof t.after === "string" ? t.after : undefined;
  });
}
