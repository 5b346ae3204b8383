// Helpers for the adversarial tests: raw HTTP requests to the Worker, minting
// hostile tokens, and storage snapshots to prove "nothing stored".
import { env } from "cloudflare:test";
import { sign } from "hono/jwt";
import { ConnectError } from "@connectrpc/connect";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { CoordinatorService } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { type Scope, scopeObjectName } from "../src/objects/scope-name.js";
import { relayStub, scopeStub } from "../src/objects/stubs.js";
import { BASE, workerFetch } from "./client.js";
import { dumpObject } from "./objects.js";

/** A coordinator client presenting exactly this Authorization value (or none). */
export function coordinatorAs(authorization: string | undefined, format: "json" | "binary" = "binary"): Client<typeof CoordinatorService> {
  return createClient(
    CoordinatorService,
    createConnectTransport({
      baseUrl: BASE,
      fetch: workerFetch,
      useBinaryFormat: format === "binary",
      interceptors: [
        (next) => async (req) => {
          if (authorization !== undefined) req.header.set("authorization", authorization);
          return next(req);
        },
      ],
    }),
  );
}

export { codeOf } from "./client.js";

/** TOKEN_SECRET of the test Worker (vitest.config.ts). */
export const TEST_TOKEN_SECRET = "test-token-secret";
export const RELAY_AUDIENCE = "moq-worker:relay";

/** The Connect error of a call, for asserting on its message too. */
export async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail");
}

/** An HS256 token with any claims, signed with any secret. */
export const jwt = (claims: Record<string, unknown>, secret = TEST_TOKEN_SECRET, alg: "HS256" | "HS384" | "HS512" = "HS256") =>
  sign(claims, secret, alg);

export interface RawResult {
  status: number;
  contentType: string | null;
  /** Connect error code from a JSON error body, if there is one. */
  code?: string;
  message?: string;
  text: string;
}

/** POSTs (or other method) straight to the Worker, bypassing any client. */
export async function raw(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: BodyInit | null } = {},
): Promise<RawResult> {
  const res = await workerFetch(`${BASE}${path}`, {
    method: init.method ?? "POST",
    headers: init.headers,
    body: init.body,
    ...(init.body instanceof ReadableStream ? { duplex: "half" } : {}),
  } as RequestInit);
  const text = await res.text();
  const out: RawResult = { status: res.status, contentType: res.headers.get("content-type"), text };
  if (out.contentType?.startsWith("application/json")) {
    try {
      const j = JSON.parse(text) as { code?: string; message?: string };
      out.code = j.code;
      out.message = j.message;
    } catch {
      // not an error body
    }
  }
  return out;
}

export const coordinatorPath = (method: string) => `/moqworker.v1.CoordinatorService/${method}`;
export const adminPath = (method: string) => `/moqworker.v1.AdminService/${method}`;

/** A body delivered as a stream of chunks, so the request has no Content-Length. */
export function chunked(bytes: Uint8Array, chunk = 16 * 1024): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

/** The tables of a scope that hold relay-owned state and operator settings. */
export const SCOPE_STATE_TABLES = ["namespaces", "tracks", "namespace_subscriptions", "track_subscriptions", "paths", "config"];

/** Snapshot of scope objects' state tables only (a refused call may still note who asked). */
export async function scopeState(scopes: Scope[]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const s of scopes) {
    const all = await dumpObject(scopeStub(env, s));
    out[`scope ${scopeObjectName(s)}`] = Object.fromEntries(SCOPE_STATE_TABLES.map((t) => [t, all[t]]));
  }
  return out;
}

/** Snapshot of scope objects (null = unscoped) and relay objects, by URL. */
export async function snapshot(scopes: Scope[], relays: string[] = []): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const s of scopes) out[`scope ${scopeObjectName(s)}`] = await dumpObject(scopeStub(env, s));
  for (const r of relays) out[`relay ${r}`] = await dumpObject(relayStub(env, r));
  return out;
}

/** True if the relay's object holds no lease and no scopes: it never wrote or beat. */
export async function relayNeverWrote(url: string): Promise<boolean> {
  const d = await dumpObject(relayStub(env, url));
  // The schema version is the object's own bookkeeping, written when it starts.
  return Object.entries(d).every(([table, rows]) => table === "schema_version" || rows.length === 0);
}
