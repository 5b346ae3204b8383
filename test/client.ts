// Test clients that go through the Worker's real HTTP entry point.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { exports } from "cloudflare:workers";
import { encodeBase64Url } from "hono/utils/encode";
import { AdminService } from "../src/gen/moqworker/v1/admin_pb.js";
import { CoordinatorService, type Namespace } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { create } from "@bufbuild/protobuf";
import { NamespaceSchema } from "../src/gen/moqworker/v1/coordinator_pb.js";

export const BASE = "http://moq-worker.test";
export const ADMIN_TOKEN = "test-admin-token";

// connect-web asks for redirect: "error", which workerd's fetch does not take.
export const workerFetch: typeof fetch = (input, init) =>
  (exports as unknown as { default: Fetcher }).default.fetch(new Request(input, { ...init, redirect: "manual" }));

type Format = "json" | "binary";

function transport(headers: Record<string, string>, format: Format) {
  return createConnectTransport({
    baseUrl: BASE,
    fetch: workerFetch,
    useBinaryFormat: format === "binary",
    interceptors: [
      (next) => async (req) => {
        for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
        return next(req);
      },
    ],
  });
}

export function adminClient(format: Format = "json", token = ADMIN_TOKEN): Client<typeof AdminService> {
  return createClient(AdminService, transport({ authorization: `Bearer ${token}` }, format));
}

export type Coordinator = Client<typeof CoordinatorService> & { url: string; token: string };

/** A relay identity: mints its token through the admin API. `versions`: its Moq-Relay-Versions header. */
export async function relay(url: string, format: Format = "binary", epoch?: string, versions?: string): Promise<Coordinator> {
  const { token } = await adminClient().createRelayToken({ relayUrl: url });
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (epoch !== undefined) headers["moq-relay-epoch"] = epoch;
  if (versions !== undefined) headers["moq-relay-versions"] = versions;
  const client = createClient(CoordinatorService, transport(headers, format));
  return Object.assign(client, { url: new URL(url).href, token });
}

const utf8 = new TextEncoder();

/** "a/b/c" → Namespace{fields: [a, b, c]}; "" → the empty prefix. */
export function ns(path: string): Namespace {
  return create(NamespaceSchema, { fields: path === "" ? [] : path.split("/").map((f) => utf8.encode(f)) });
}

export const text = (n: Pick<Namespace, "fields"> | undefined) => (n?.fields ?? []).map((f) => new TextDecoder().decode(f)).join("/");

/** The Connect code a call ends with, or "ok". */
export async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

/**
 * A call retried, as relays retry, while it is shed for load (UNAVAILABLE:
 * more than MAX_INFLIGHT_PER_SCOPE calls on one scope in this isolate). For
 * tests that fire more concurrent calls at one scope than that.
 */
export async function unshed<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      if (ConnectError.from(e).code !== Code.Unavailable || attempt >= 20) throw e;
      await new Promise((r) => setTimeout(r, 5 * attempt));
    }
  }
}

let counter = 0;
/** A scope name no other test uses (tests share storage within a file). */
export const freshScope = (name: string) => `${name}-${++counter}-${crypto.randomUUID().slice(0, 8)}`;

/** A relay URL no other test uses. */
export const uniqueRelayUrl = (name: string) => `https://${name}-${crypto.randomUUID().slice(0, 8)}.example.com/`;

/**
 * The relay URL an answer points at, without the relay-link path scoped
 * answers carry (`/_relay/<scope>/<mac>`, test/relay-link.test.ts checks it):
 * for tests about which relay is chosen, not how it is dialled.
 */
export const base = (url: string | undefined) => url?.replace(/\/_relay\/[A-Za-z0-9_-]+\/[A-Za-z0-9_-]+$/, "/");

/** Unpadded base64url, from hono's encoder (not the Worker's module, so link paths are checked independently). */
export const b64url = (bytes: Uint8Array) => encodeBase64Url(bytes.slice().buffer).replace(/=+$/, "");

/**
 * A scope's relay-link path as the contract defines it, computed here and not
 * with the Worker's code: /_relay/<b64url(scope)>/<b64url(first 16 bytes of
 * HMAC-SHA256(secret, "moq-worker relay link v1\0" + scope))>.
 */
export async function expectedLink(scope: string, secret = "test-token-secret"): Promise<string> {
  const utf8 = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8.encode(`moq-worker relay link v1\u0000${scope}`))).slice(0, 16);
  return `/_relay/${b64url(utf8.encode(scope))}/${b64url(mac)}`;
}
