// The benchmark's operations, as requests for each system.
//
// moq-worker is called the way the Rust edge calls it: Connect unary over
// HTTP/1.1, binary protobuf bodies (application/proto), a relay token in
// Authorization. (Connect JSON is available too, for the curl-style row.)
// moq-api is called the way moq-relay-ietf 0.7's ApiCoordinator calls it
// (through moq-api's client): POST/GET/PATCH /origin/<key> with a JSON
// {"url": ...} body, keys built as the ApiCoordinator builds them.
//
// Request bodies are tiny hand-encoded protobuf messages: every request the
// bench sends has fields 1 = scope (string) and 2 = namespace/prefix
// (Namespace { repeated bytes fields = 1 }), see schema/moqworker/v1/coordinator.proto.

const utf8 = new TextEncoder();

function varint(n) {
  const out = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/** Length-delimited field (wire type 2). */
function ld(field, bytes) {
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint(bytes.length)]), Buffer.from(bytes)]);
}

export function encodeNamespace(fields) {
  return Buffer.concat(fields.map((f) => ld(1, utf8.encode(f))));
}

/** {scope, namespace|prefix} — the shape of every request the bench sends. */
export function encodeScopedNamespace(scope, fields) {
  const parts = [];
  if (scope !== undefined) parts.push(ld(1, utf8.encode(scope)));
  parts.push(ld(2, encodeNamespace(fields)));
  return Buffer.concat(parts);
}

const b64 = (s) => Buffer.from(s, "utf8").toString("base64");

// ---- namespaces ---------------------------------------------------------------

/**
 * The i-th namespace of a set: 3 to 5 fields, unique by its third field, e.g.
 * bench/t12/r345 or bench/t12/r345/c6/q0. `set` keeps sets apart.
 */
export function nsFields(set, i) {
  const depth = 3 + (i % 3);
  return [set, `t${i % 97}`, `r${i}`, `c${(i * 7) % 13}`, `q${i % 5}`].slice(0, depth);
}

/** A namespace under no registration of set (its third field never occurs). */
export function missFields(set, i) {
  return [set, `t${i % 97}`, `miss${i}`, `c${i % 13}`].slice(0, 3 + (i % 2));
}

/** Deterministic pseudo-random index in [0, n), so lookups hit the whole table. */
export function spread(i, n) {
  // Knuth multiplicative hash; n may be any size.
  return Math.floor(((Math.imul(i + 1, 2654435761) >>> 0) / 2 ** 32) * n);
}

// ---- moq-worker -------------------------------------------------------------

const SERVICE = "/moqworker.v1.CoordinatorService";

/** auth: the relay's headers (Authorization and its boot epoch), see relay.mjs. */
function workerReq(method, auth, scope, fields, format) {
  if (typeof auth === "function") throw new Error("workerReq: resolve auth(i) first");
  if (format === "json") {
    return {
      method: "POST",
      path: `${SERVICE}/${method}`,
      headers: { "content-type": "application/json", ...auth },
      body: Buffer.from(
        JSON.stringify({
          ...(scope === undefined ? {} : { scope }),
          [method === "SubscribeNamespace" ? "prefix" : "namespace"]: { fields: fields.map(b64) },
        }),
      ),
    };
  }
  return {
    method: "POST",
    path: `${SERVICE}/${method}`,
    headers: { "content-type": "application/proto", "connect-protocol-version": "1", ...auth },
    body: encodeScopedNamespace(scope, fields),
  };
}

/**
 * moq-worker operations. scopeOf(i) picks the scope of request i; auth is
 * the calling relay's headers, or a function i → headers (RelayPool.auth).
 */
const authOf = (auth, i) => (typeof auth === "function" ? auth(i) : auth);

export const worker = {
  register: ({ auth, format = "proto", scopeOf, set }) => ({
    name: "register",
    expect: 200,
    request: (i) => workerReq("RegisterNamespace", authOf(auth, i), scopeOf(i), nsFields(set, i), format),
  }),
  lookupHit: ({ auth, format = "proto", scopeOf, set, registered }) => ({
    name: "lookup-hit",
    expect: 200,
    request: (i) => workerReq("Lookup", authOf(auth, i), scopeOf(i), nsFields(set, spread(i, registered)), format),
  }),
  lookupMiss: ({ auth, format = "proto", scopeOf, set }) => ({
    name: "lookup-miss",
    expect: 404, // Connect NOT_FOUND
    request: (i) => workerReq("Lookup", authOf(auth, i), scopeOf(i), missFields(set, i), format),
  }),
  subscribe: ({ auth, scopeOf, set }) => ({
    name: "subscribe-namespace",
    expect: 200,
    // Prefixes of 2 to 4 fields, unique by their second field.
    request: (i) => workerReq("SubscribeNamespace", authOf(auth, i), scopeOf(i), [set, `p${i}`, "x", "y"].slice(0, 2 + (i % 3)), "proto"),
  }),
  lookupSubscribers: ({ auth, scopeOf, set, subscribed }) => ({
    name: "lookup-namespace-subscribers",
    expect: 200,
    // A namespace under the j-th subscribed prefix (so 1 relay matches).
    request: (i) => {
      const j = spread(i, subscribed);
      return workerReq("LookupNamespaceSubscribers", authOf(auth, i), scopeOf(i), [set, `p${j}`, "x", "y", `leaf${i % 7}`], "proto");
    },
  }),
  /** Layers, for the profile: each stops at a different depth of the stack. */
  healthz: () => ({ name: "GET /healthz (HTTP floor)", expect: 200, request: () => ({ method: "GET", path: "/healthz" }) }),
  noAuth: ({ scopeOf, set }) => ({
    name: "Lookup without token (routing, no JWT)",
    expect: 401,
    request: (i) => {
      return workerReq("Lookup", {}, scopeOf(i), nsFields(set, i), "proto");
    },
  }),
  invalidNs: ({ auth, scopeOf }) => ({
    name: "Lookup, empty namespace (JWT + Connect decode, no DO)",
    expect: 400, // INVALID_ARGUMENT
    request: (i) => workerReq("Lookup", authOf(auth, i), scopeOf(i), [], "proto"),
  }),
};

// ---- the floor Worker (bench/floor/worker.js) ------------------------------------

/**
 * The floor's routes, sent the body a lookup-hit sends (the Durable Object gets
 * it as its argument), or with `fields` another request's namespace.
 */
const floorOp = (name, path, fields = (i) => nsFields("ab", spread(i, 2000))) => ({
  name,
  expect: 200,
  request: (i) => ({
    method: "POST",
    path,
    headers: { "content-type": "application/proto" },
    body: encodeScopedNamespace("ab", fields(i)),
  }),
});

export const floor = {
  post: () => floorOp("floor: POST read and answered, no DO", "/post"),
  noop: () => floorOp("floor: Worker → DO RPC no-op", "/noop"),
  sql: () => floorOp("floor: + one SQL SELECT", "/sql"),
  insert: () => floorOp("floor: + one SQL INSERT", "/insert"),
  // The namespaces a register sends (its keys land all over the table, as a register's do).
  claim: () => floorOp("floor: + RegisterNamespace's own INSERT", "/claim", (i) => nsFields("abr", i)),
};

// ---- moq-api --------------------------------------------------------------

/**
 * The registry key moq-relay-ietf's ApiCoordinator uses (src/bin/moq-relay-ietf/
 * api_coordinator.rs registry_key): "{scope}:{hex field}.{hex field}...",
 * scope a connection path such as "/bench"; the path is /origin/{key}.
 */
export const moqApiKey = (scope, fields) => `${scope}:${fields.map((f) => Buffer.from(f, "utf8").toString("hex")).join(".")}`;
const originPath = (scope, fields) => `/origin/${moqApiKey(scope, fields)}`;

/** moq-api operations; `scope` is the connection path that prefixes the keys. */
export const moqApi = {
  register: ({ relayUrl, scope, set }) => {
    const body = Buffer.from(JSON.stringify({ url: relayUrl }));
    return {
      name: "register",
      expect: 200,
      request: (i) => ({
        method: "POST",
        path: originPath(scope, nsFields(set, i)),
        headers: { "content-type": "application/json" },
        body,
      }),
    };
  },
  lookupHit: ({ scope, set, registered }) => ({
    name: "lookup-hit",
    expect: 200,
    request: (i) => ({ method: "GET", path: originPath(scope, nsFields(set, spread(i, registered))) }),
  }),
  lookupMiss: ({ scope, set }) => ({
    name: "lookup-miss",
    expect: 404,
    request: (i) => ({ method: "GET", path: originPath(scope, missFields(set, i)) }),
  }),
  /** The relay's refresh (ApiCoordinator::start_refresh_task): PATCH the origin, which resets the key's 600 s TTL. */
  refresh: ({ relayUrl, scope, set, keys }) => {
    const body = Buffer.from(JSON.stringify({ url: relayUrl }));
    return {
      name: "refresh",
      expect: 200,
      request: (i) => ({
        method: "PATCH",
        path: originPath(scope, nsFields(set, i % keys)),
        headers: { "content-type": "application/json" },
        body,
      }),
    };
  },
};
