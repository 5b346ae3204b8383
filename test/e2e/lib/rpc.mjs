// Connect JSON calls for the end-to-end suites: no generated client, so the
// suites see the wire exactly as curl and third-party relays do.
import { DEV_ADMIN_TOKEN } from "./worker.mjs";

/** One Connect JSON call; resolves to the response message, throws on a Connect error (err.code). */
export async function call(baseUrl, service, method, body, token, headers = {}) {
  const res = await fetch(`${baseUrl}/moqworker.v1.${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) {
    const err = new Error(`${method}: ${json.code}: ${json.message}`);
    err.code = json.code;
    throw err;
  }
  return json;
}

/** "a/b" → Namespace JSON {fields: [base64("a"), base64("b")]}; "" is the empty namespace. */
export const ns = (path) => ({ fields: path === "" ? [] : path.split("/").map((f) => Buffer.from(f).toString("base64")) });

/** Namespace JSON → "a/b". */
export const nsText = (n) => (n?.fields ?? []).map((f) => Buffer.from(f, "base64").toString()).join("/");

/** A relay token for relayUrl, minted with the development admin token. */
export async function relayToken(baseUrl, relayUrl, adminToken = DEV_ADMIN_TOKEN) {
  return (await call(baseUrl, "AdminService", "CreateRelayToken", { relayUrl }, adminToken)).token;
}

/**
 * The relay URL a coordinator answer names, without the relay-link path that
 * scoped answers put in place of its path (`/_relay/<scope>/<mac>`, SECURITY.md
 * "Relay links"): for checks about which relay was chosen.
 */
export const registeredUrl = (url) => url?.replace(/\/_relay\/[A-Za-z0-9_-]+\/[A-Za-z0-9_-]+$/, "/");
