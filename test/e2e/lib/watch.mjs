// A watch-channel client for the Node tests and benchmarks: GET /v1/watch on
// a real Worker with Node's own WebSocket (undici, which takes `headers`),
// events decoded with the generated schema (src/gen, via bin/ts-hooks.mjs).
import { registerTypeScriptHooks } from "../../../bin/ts-hooks.mjs";

registerTypeScriptHooks();
const { fromBinary } = await import("@bufbuild/protobuf");
const { WatchEventSchema } = await import("../../../src/gen/moqworker/v1/watch_pb.ts");

const text = (fields) => fields.map((f) => Buffer.from(f).toString()).join("/");

/** An event as plain data: { seq, hello } or { seq, namespaces, tracks, config, paths, all } (namespaces as "a/b"). */
export function plainEvent(e) {
  const seq = Number(e.seq);
  if (e.event.case === "hello") return { seq, hello: e.event.value.stream };
  const v = e.event.value;
  return {
    seq,
    namespaces: v.namespaces.map((n) => text(n.fields)),
    tracks: v.tracks.map((t) => `${text(t.namespace?.fields ?? [])}#${t.name}`),
    config: v.config,
    paths: v.paths,
    all: v.all,
  };
}

/**
 * Opens a watch socket; resolves once it is open (the hello may still be on
 * its way), or rejects with the refusal. `onEvent(plain, receivedAt)` sees
 * each event as it arrives, besides the queue `next()` reads.
 */
export function openWatch(baseUrl, token, scope, { onEvent } = {}) {
  const url = new URL("/v1/watch", baseUrl.replace(/^http/, "ws"));
  if (scope !== undefined) url.searchParams.set("scope", scope);
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
  ws.binaryType = "arraybuffer";
  const queue = [];
  const waiting = [];
  const wake = () => {
    for (const w of waiting.splice(0)) w();
  };
  let closeCode;
  ws.addEventListener("message", (m) => {
    const at = performance.now();
    const item = typeof m.data === "string" ? m.data : plainEvent(fromBinary(WatchEventSchema, new Uint8Array(m.data)));
    if (typeof item !== "string") onEvent?.(item, at);
    queue.push(item);
    wake();
  });
  ws.addEventListener("close", (e) => {
    closeCode = e.code;
    wake();
  });
  const take = async (ms, what) => {
    const deadline = performance.now() + ms;
    while (queue.length === 0) {
      if (closeCode !== undefined) throw new Error(`watch ${scope}: closed (${closeCode}) while waiting for ${what}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`watch ${scope}: no ${what} within ${ms} ms`);
      await new Promise((r) => {
        waiting.push(r);
        setTimeout(r, left);
      });
    }
    return queue.shift();
  };
  const watcher = {
    ws,
    /** The next event (plain), within `ms`. */
    next: async (ms = 10_000) => {
      const item = await take(ms, "event");
      if (typeof item === "string") throw new Error(`watch ${scope}: expected an event, got '${item}'`);
      return item;
    },
    /** The next text frame ("pong"), within `ms`. */
    text: async (ms = 10_000) => {
      const item = await take(ms, "text frame");
      if (typeof item !== "string") throw new Error(`watch ${scope}: expected a text frame, got seq ${item.seq}`);
      return item;
    },
    /** Resolves with the close code once the socket is closed. */
    closed: () =>
      closeCode !== undefined ? Promise.resolve(closeCode) : new Promise((r) => ws.addEventListener("close", (e) => r(e.code))),
    close: () => ws.close(),
  };
  return new Promise((resolve, reject) => {
    ws.addEventListener("open", () => resolve(watcher), { once: true });
    ws.addEventListener("error", () => reject(new Error(`watch ${scope}: refused or unreachable (${url.pathname}${url.search})`)), {
      once: true,
    });
  });
}
