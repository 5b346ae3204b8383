// Overload (src/rpc/overload.ts; docs/reliability.md): a scope whose object
// cannot keep up answers UNAVAILABLE with a retry hint at once, never a hang or
// a 500, while other scopes and heartbeats go on; runtime errors a retry may
// fix are UNAVAILABLE, others INTERNAL.
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { LookupRequestSchema } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { DEFAULT_MAX_INFLIGHT_PER_SCOPE, errorOf, maxInflightPerScope, RETRY_AFTER_SECONDS } from "../src/rpc/overload.js";
import { scopeStub } from "../src/objects/stubs.js";
import { BASE, freshScope, ns, relay, workerFetch } from "./client.js";
import { coordinatorPath, raw } from "./hardening.js";

type Format = "json" | "binary";

/** A Lookup request: JSON takes connect's general path, binary the pipeline's fast path (rpc/fast-wire.ts). */
const lookupRequest = (token: string, scope: string, namespace: string, format: Format) => ({
  method: "POST",
  headers: { authorization: `Bearer ${token}`, "content-type": format === "json" ? "application/json" : "application/proto" },
  body:
    format === "json"
      ? JSON.stringify({ scope, namespace: { fields: namespace.split("/").map((f) => btoa(f)) } })
      : toBinary(LookupRequestSchema, create(LookupRequestSchema, { scope, namespace: ns(namespace) })),
});

const lookup = (token: string, scope: string, namespace = "live/cam", format: Format = "json") =>
  raw(coordinatorPath("Lookup"), lookupRequest(token, scope, namespace, format));

describe.each<Format>(["json", "binary"])("load shedding per scope (%s)", (format) => {
  it("past MAX_INFLIGHT_PER_SCOPE calls waiting on one scope, more are UNAVAILABLE with Retry-After; the rest, other scopes and heartbeats are served", async () => {
    const hot = freshScope("hot");
    const quiet = freshScope("quiet");
    const a = await relay(`https://overload-a-${format}.example.com`);
    await a.heartbeat({ epoch: "e1" });
    await a.registerNamespace({ scope: hot, namespace: ns("live/cam") });
    await a.registerNamespace({ scope: quiet, namespace: ns("live/cam") });

    // The hot scope's object stops answering until released: every call to it waits.
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const blocked = runInDurableObject(scopeStub(env, hot), (_, state) => state.blockConcurrencyWhile(() => gate));

    const extra = 8;
    const total = DEFAULT_MAX_INFLIGHT_PER_SCOPE + extra;
    const answered: Awaited<ReturnType<typeof lookup>>[] = [];
    const calls = Array.from({ length: total }, async () => {
      const r = await lookup(a.token, hot, "live/cam", format);
      answered.push(r);
      return r;
    });
    // The shed calls come back while the object is still blocked.
    for (let i = 0; i < 500 && answered.length < extra; i++) await new Promise((r) => setTimeout(r, 10));
    expect(answered.length).toBe(extra);
    for (const r of answered) {
      expect(r.status).toBe(503);
      expect(r.code).toBe("unavailable");
      expect(r.message).toMatch(/MAX_INFLIGHT_PER_SCOPE/);
    }
    // Meanwhile another scope answers, and so does a heartbeat (never shed).
    const other = await lookup(a.token, quiet, "live/cam", format);
    expect(other.status).toBe(200);
    expect((await a.heartbeat({ epoch: "e1" })).leaseTtlMs).toBeGreaterThan(0);

    release();
    await blocked;
    const all = await Promise.all(calls);
    expect(all.filter((r) => r.status === 200)).toHaveLength(DEFAULT_MAX_INFLIGHT_PER_SCOPE);
    expect(all.filter((r) => r.code === "unavailable")).toHaveLength(extra);
    // Once drained, the scope answers again.
    expect((await lookup(a.token, hot, "live/cam", format)).status).toBe(200);
  });

  it("a shed call carries the retry hint in Retry-After", async () => {
    const hot = freshScope("hint");
    const a = await relay(`https://overload-hint-${format}.example.com`);
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const blocked = runInDurableObject(scopeStub(env, hot), (_, state) => state.blockConcurrencyWhile(() => gate));
    const waiting = Array.from({ length: DEFAULT_MAX_INFLIGHT_PER_SCOPE }, () => lookup(a.token, hot, "live/cam", format));
    let shed: Response | undefined;
    for (let i = 0; i < 100 && !shed; i++) {
      await new Promise((r) => setTimeout(r, 10));
      const res = await Promise.race([
        workerFetch(`${BASE}${coordinatorPath("Lookup")}`, lookupRequest(a.token, hot, "x", format)),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 200)),
      ]);
      if (res?.status === 503) shed = res;
    }
    expect(shed?.headers.get("retry-after")).toBe(String(RETRY_AFTER_SECONDS));
    release();
    await blocked;
    await Promise.all(waiting);
  });
});

describe("the shedding bound", () => {
  it("MAX_INFLIGHT_PER_SCOPE: a non-negative integer (0 turns shedding off); anything else is the default", () => {
    expect(maxInflightPerScope({})).toBe(DEFAULT_MAX_INFLIGHT_PER_SCOPE);
    expect(maxInflightPerScope({ MAX_INFLIGHT_PER_SCOPE: "5" })).toBe(5);
    expect(maxInflightPerScope({ MAX_INFLIGHT_PER_SCOPE: "0" })).toBe(0);
    for (const bad of ["", "-1", "1.5", "many"])
      expect(maxInflightPerScope({ MAX_INFLIGHT_PER_SCOPE: bad })).toBe(DEFAULT_MAX_INFLIGHT_PER_SCOPE);
  });
});

describe("runtime errors as Connect codes", () => {
  const runtimeError = (message: string, flags: { overloaded?: boolean; retryable?: boolean }) => Object.assign(new Error(message), flags);

  it("an overloaded object is UNAVAILABLE with Retry-After", () => {
    const err = errorOf(runtimeError("Durable Object is overloaded. Too many requests queued.", { overloaded: true, retryable: false }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.metadata.get("retry-after")).toBe(String(RETRY_AFTER_SECONDS));
  });

  it("a transient failure the runtime marks retryable (connection lost, object reset) is UNAVAILABLE", () => {
    expect(errorOf(runtimeError("Network connection lost.", { retryable: true })).code).toBe(Code.Unavailable);
  });

  it("anything else is INTERNAL, and Connect errors pass unchanged", () => {
    expect(errorOf(new Error("boom")).code).toBe(Code.Internal);
    expect(errorOf("a string").code).toBe(Code.Internal);
    const mine = new ConnectError("x", Code.AlreadyExists);
    expect(errorOf(mine)).toBe(mine);
  });

  it("a Durable Object call that throws a retryable error reaches the relay as UNAVAILABLE (503), not 500", async () => {
    const scope = freshScope("reset");
    const a = await relay("https://overload-reset.example.com");
    await a.registerNamespace({ scope, namespace: ns("live/cam") });
    // The scope's object throws the way a reset object's stub does (patched on the class, restored after).
    const proto = await runInDurableObject(scopeStub(env, scope), (instance) => Object.getPrototypeOf(instance) as { lookup: unknown });
    const original = proto.lookup;
    proto.lookup = () => {
      throw runtimeError("Network connection lost.", { retryable: true });
    };
    try {
      const r = await lookup(a.token, scope);
      expect(r.status).toBe(503);
      expect(r.code).toBe("unavailable");
    } finally {
      proto.lookup = original;
    }
  });
});
