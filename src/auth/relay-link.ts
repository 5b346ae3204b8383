// Relay-link paths: the connection path a relay dials another relay with for
// a scoped answer, `/_relay/<b64url(scope)>/<b64url(mac)>`, where mac is the
// first 16 bytes of HMAC-SHA256(TOKEN_SECRET, LABEL + scope). Only the Worker
// can make one, it names exactly one scope, and ResolveScope verifies it, so a
// link widens nobody's access beyond "a relay of this network in this scope"
// (SECURITY.md "Relay links"). The same path serves every relay of a scope, so
// a peer's URL is stable per (scope, relay) and upstream connections are reused.
import { Code, ConnectError } from "@connectrpc/connect";
import { fromBase64Url, toBase64Url } from "../model/base64url.js";
import { setBounded } from "./bounded-cache.js";
import { checkScopeName, invalid } from "../model/validate.js";

/** Every link path starts with it; PutPath refuses paths under it. */
export const RELAY_LINK_PREFIX = "/_relay";
const LABEL = "moq-worker relay link v1\u0000";
const MAC_BYTES = 16;
const FIELD = "connection_path";

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// Per isolate: imported keys (by secret) and derived paths (by scope). A
// scoped answer needs its scope's path every time, and an HMAC per answer would
// cost every scoped call. Both maps reset when the secrets change.
const MAX_CACHED_PATHS = 4096;
let cachedFor: string | undefined;
const keys = new Map<string, Promise<CryptoKey>>();
const paths = new Map<string, string>();

function resetIfRotated(secrets: readonly string[]): void {
  const ring = secrets.join("\u0000");
  if (ring === cachedFor) return;
  cachedFor = ring;
  keys.clear();
  paths.clear();
}

function keyOf(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keys.set(secret, key);
  }
  return key;
}

async function macOf(secret: string, scope: string): Promise<Uint8Array> {
  const full = await crypto.subtle.sign("HMAC", await keyOf(secret), utf8.encode(LABEL + scope));
  return new Uint8Array(full, 0, MAC_BYTES);
}

/** The scope's relay-link path, made with the current secret (cached per isolate). */
export async function relayLinkPath(secrets: readonly string[], scope: string): Promise<string> {
  if (secrets.length === 0) throw new ConnectError("TOKEN_SECRET is not set: relay links cannot be made", Code.FailedPrecondition);
  resetIfRotated(secrets);
  const hit = paths.get(scope);
  if (hit !== undefined) return hit;
  const path = `${RELAY_LINK_PREFIX}/${toBase64Url(utf8.encode(scope))}/${toBase64Url(await macOf(secrets[0], scope))}`;
  setBounded(paths, scope, path, MAX_CACHED_PATHS);
  return path;
}

/** Whether a normalised connection path is under the reserved link prefix. */
export function isRelayLinkPath(path: string): boolean {
  return path === RELAY_LINK_PREFIX || path.startsWith(`${RELAY_LINK_PREFIX}/`);
}

/** Byte arrays compared in time independent of where they differ (the runtime's compare, as bearer.ts uses). */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && crypto.subtle.timingSafeEqual(a, b);
}

/**
 * The scope a link path (normalised, under RELAY_LINK_PREFIX) stands for.
 * Throws INVALID_ARGUMENT for a malformed path and PERMISSION_DENIED for a MAC
 * no current or previous secret made, both naming `connection_path`.
 */
export async function verifyRelayLinkPath(secrets: readonly string[], path: string): Promise<string> {
  const parts = path.slice(RELAY_LINK_PREFIX.length + 1).split("/");
  if (!path.startsWith(`${RELAY_LINK_PREFIX}/`) || parts.length !== 2) {
    throw invalid(
      FIELD,
      `a relay-link path has the form ${RELAY_LINK_PREFIX}/<scope>/<mac> (paths under ${RELAY_LINK_PREFIX} are reserved)`,
    );
  }
  const [scopePart, macPart] = parts;
  const scopeBytes = fromBase64Url(scopePart);
  let scope: string;
  try {
    if (!scopeBytes) throw new Error();
    scope = utf8Strict.decode(scopeBytes);
  } catch {
    throw invalid(FIELD, "the scope segment of the relay-link path is not base64url of a UTF-8 scope name");
  }
  checkScopeName(FIELD, scope);
  const mac = fromBase64Url(macPart);
  if (!mac || mac.length !== MAC_BYTES) {
    throw invalid(FIELD, `the MAC segment of the relay-link path is not ${MAC_BYTES} bytes of base64url`);
  }
  if (secrets.length === 0)
    throw new ConnectError(`${FIELD}: relay links cannot be checked: TOKEN_SECRET is not set`, Code.FailedPrecondition);
  resetIfRotated(secrets);
  // Every secret is tried, whatever the first gives, so timing tells nothing of which one matched.
  let match = false;
  for (const secret of secrets) {
    if (constantTimeEqual(mac, await macOf(secret, scope))) match = true;
  }
  if (!match) {
    throw new ConnectError(
      `${FIELD}: relay-link path for scope '${scope.slice(0, 256)}' has a MAC this network did not make`,
      Code.PermissionDenied,
    );
  }
  return scope;
}

/** linkUrl's answers, so a scoped answer does not parse its relay's URL each time (docs/performance.md "Pipeline"). */
const MAX_CACHED_LINK_URLS = 4096;
const linkUrls = new Map<string, string>();

/** `url` (a relay's registered https URL) with its path replaced by `linkPath`, query and fragment dropped. */
export function linkUrl(url: string, linkPath: string): string {
  const key = `${url}\u0000${linkPath}`;
  const hit = linkUrls.get(key);
  if (hit !== undefined) return hit;
  const u = new URL(url);
  u.pathname = linkPath;
  u.search = "";
  u.hash = "";
  setBounded(linkUrls, key, u.href, MAX_CACHED_LINK_URLS);
  return u.href;
}

/**
 * A peer's URL as registered, when an edge names it (context.source_url) the
 * way it dialled it: at a relay-link path. Other URLs are returned unchanged.
 */
export function withoutLinkPath(url: string): string {
  const u = new URL(url);
  if (!isRelayLinkPath(u.pathname)) return url;
  u.pathname = "/";
  return u.href;
}
