// A watch-channel client for the Worker tests: opens GET /v1/watch through
// the Worker's real entry point and queues the decoded events.
import { fromBinary } from "@bufbuild/protobuf";
import { type WatchEvent, WatchEventSchema } from "../src/gen/moqworker/v1/watch_pb.js";
import { BASE, relay, uniqueRelayUrl, workerFetch } from "./client.js";

export interface Watcher {
  ws: WebSocket;
  /** The next event, or throws after `ms` without one. */
  next(ms?: number): Promise<WatchEvent>;
  /** The next text frame (the pong). */
  text(ms?: number): Promise<string>;
  /** Resolves if no event arrives within `ms`. */
  quiet(ms?: number): Promise<void>;
  /** Resolves with the close code once the socket closed. */
  closed: Promise<number>;
}

/** The raw upgrade request: `scope` undefined omits the parameter. */
export function watchRequest(token: string | undefined, scope: string | undefined, extra: Record<string, string> = {}): Promise<Response> {
  const url = new URL("/v1/watch", BASE);
  if (scope !== undefined) url.searchParams.set("scope", scope);
  const headers: Record<string, string> = { upgrade: "websocket", ...extra };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  return workerFetch(url, { headers });
}

export async function watch(token: string, scope: string | undefined): Promise<Watcher> {
  const res = await watchRequest(token, scope);
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`watch ${scope}: HTTP ${res.status} ${await res.text()}`);
  ws.accept();
  const events: (WatchEvent | string)[] = [];
  const waiting: (() => void)[] = [];
  // Binary frames arrive as Blobs (the standard binaryType): decoded in arrival order.
  let decoded = Promise.resolve();
  ws.addEventListener("message", (m) => {
    const data = m.data as string | Blob | ArrayBuffer;
    decoded = decoded.then(async () => {
      const bytes = typeof data === "string" ? undefined : new Uint8Array(data instanceof Blob ? await data.arrayBuffer() : data);
      events.push(bytes === undefined ? (data as string) : fromBinary(WatchEventSchema, bytes));
      for (const w of waiting.splice(0)) w();
    });
  });
  const closed = new Promise<number>((r) => ws.addEventListener("close", (e) => r(e.code)));
  const take = async (ms: number): Promise<WatchEvent | string | undefined> => {
    const deadline = Date.now() + ms;
    while (events.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((r) => {
        waiting.push(r);
        setTimeout(r, left);
      });
    }
    return events.shift();
  };
  return {
    ws,
    closed,
    async next(ms = 5000) {
      const e = await take(ms);
      if (e === undefined || typeof e === "string") throw new Error(`watch ${scope}: expected an event, got ${e ?? "nothing"}`);
      return e;
    },
    async text(ms = 5000) {
      const e = await take(ms);
      if (typeof e !== "string") throw new Error(`watch ${scope}: expected a text frame, got ${e === undefined ? "nothing" : "an event"}`);
      return e;
    },
    async quiet(ms = 200) {
      const e = await take(ms);
      if (e !== undefined) throw new Error(`watch ${scope}: expected nothing, got ${typeof e === "string" ? e : e.event.case}`);
    },
  };
}

const utf8 = new TextDecoder();

/** An event as plain data, for toEqual: { seq, hello } or { seq, namespaces, tracks, config, paths, all }. */
export function plain(e: WatchEvent) {
  const seq = Number(e.seq);
  if (e.event.case === "hello") return { seq, hello: e.event.value.stream };
  if (e.event.case !== "invalidate") return { seq };
  const v = e.event.value;
  const path = (fields: Uint8Array[]) => fields.map((f) => utf8.decode(f)).join("/");
  return {
    seq,
    namespaces: v.namespaces.map((n) => path(n.fields)),
    tracks: v.tracks.map((t) => `${path(t.namespace?.fields ?? [])}#${t.name}`),
    config: v.config,
    paths: v.paths,
    all: v.all,
  };
}

/** An invalidation as plain() shows it: only what is given is set. */
export const inv = (
  seq: number,
  what: { namespaces?: string[]; tracks?: string[]; config?: boolean; paths?: string[]; all?: boolean },
) => ({
  seq,
  namespaces: what.namespaces ?? [],
  tracks: what.tracks ?? [],
  config: what.config ?? false,
  paths: what.paths ?? [],
  all: what.all ?? false,
});

/** A watcher of `scope` as a relay of its own (`url`), past its hello (a stream id); the hello's seq and stream. */
export async function watching(
  scope: string | undefined,
  url = uniqueRelayUrl("viewer"),
): Promise<{ w: Watcher; seq: number; stream: string; url: string }> {
  const viewer = await relay(url);
  const w = await watch(viewer.token, scope);
  const hello = plain(await w.next());
  if (!/^[0-9a-f-]{36}$/.test(String(hello.hello)))
    throw new Error(`watch ${scope}: expected hello with a stream id, got ${JSON.stringify(hello)}`);
  return { w, seq: hello.seq, stream: hello.hello as string, url: viewer.url };
}
