// The watch channel inside a ScopeObject (schema/moqworker/v1/watch.proto):
// accepts relays' WebSockets with the hibernation API, says hello with the
// scope's change sequence, and sends each change to every open socket.
//
// Sockets are accepted with ctx.acceptWebSocket and pings are answered by the
// runtime's auto-response, so an idle watcher never wakes the object: a
// scope with no changes costs no CPU however many relays watch it
// (docs/performance.md "Watch channel"). The sequence lives in SQLite (the
// `watch` row) and is bumped by the synchronous code that made the change,
// with no await between: the runtime commits both writes together, and the
// frame leaves only once they are stored (output gate).
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { NamespaceSchema, TrackEntrySchema } from "../gen/moqworker/v1/coordinator_pb.js";
import { WatchEventSchema, WatchHelloSchema, WatchInvalidateSchema } from "../gen/moqworker/v1/watch_pb.js";
import { SCOPE_SQL } from "../objects/scope-sql.js";
import { connectErrorResponse } from "../rpc/router.js";

/** Set by the Worker's route (watch/route.ts) on the request it forwards: the watching relay. */
export const WATCH_RELAY_HEADER = "moq-watch-relay";

/** What a change may have altered; see WatchInvalidate in watch.proto. */
export interface Invalidation {
  namespaces?: Uint8Array[][];
  tracks?: { fields: Uint8Array[]; name: string }[];
  config?: boolean;
  paths?: string[];
  all?: boolean;
}

/** Hibernation tags are at most 256 characters; a longer relay URL goes untagged. */
const MAX_TAG_CHARS = 256;

export class WatchHub {
  constructor(
    private readonly ctx: DurableObjectState,
    private readonly sql: SqlStorage,
    private readonly maxWatchers: () => number,
  ) {
    // Answered by the runtime itself: pings do not wake a hibernating object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  /** Open sockets. */
  get count(): number {
    return this.ctx.getWebSockets().length;
  }

  /** Whether any relay watches: a change nobody watches bumps nothing and lists nothing. */
  get watched(): boolean {
    return this.count > 0;
  }

  /** A relay's upgrade, checked by the Worker already: accepted and greeted, or refused when the scope is full. */
  accept(request: Request): Response {
    const relay = request.headers.get(WATCH_RELAY_HEADER) ?? "";
    const max = this.maxWatchers();
    const open = this.ctx.getWebSockets().length;
    if (open >= max) {
      return connectErrorResponse(
        new ConnectError(
          `scope: ${open} watch sockets are open on this scope, the most allowed (MAX_WATCHERS_PER_SCOPE)`,
          Code.ResourceExhausted,
        ),
      );
    }
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, relay.length > 0 && relay.length <= MAX_TAG_CHARS ? [relay] : []);
    // Survives hibernation; closeRelay finds the relay's sockets by it (tags cap the URL's length).
    server.serializeAttachment({ relay });
    const { stream, seq } = this.sequence();
    server.send(
      toBinary(WatchEventSchema, create(WatchEventSchema, { seq, event: { case: "hello", value: create(WatchHelloSchema, { stream }) } })),
    );
    return new Response(null, { status: 101, webSocket: client });
  }

  /** Something that may alter an answer changed: bump the sequence and tell every socket. */
  changed(what: Invalidation): void {
    const sockets = this.ctx.getWebSockets();
    if (sockets.length === 0) return;
    const seq = BigInt(this.sql.exec(SCOPE_SQL.watchBump).one().seq as number);
    const value = create(WatchInvalidateSchema, {
      namespaces: (what.namespaces ?? []).map((fields) => create(NamespaceSchema, { fields })),
      tracks: (what.tracks ?? []).map((t) =>
        create(TrackEntrySchema, { namespace: create(NamespaceSchema, { fields: t.fields }), name: t.name }),
      ),
      config: what.config ?? false,
      paths: what.paths ?? [],
      all: what.all ?? false,
    });
    const frame = toBinary(WatchEventSchema, create(WatchEventSchema, { seq, event: { case: "invalidate", value } }));
    for (const ws of sockets) {
      try {
        ws.send(frame);
      } catch {
        // Closing already: its relay resyncs on reconnecting.
      }
    }
  }

  /** Closes every socket the relay opened (1008, policy violation); how many. */
  closeRelay(relay: string, reason: string): number {
    let closed = 0;
    for (const ws of this.ctx.getWebSockets()) {
      if ((ws.deserializeAttachment() as { relay?: string } | null)?.relay !== relay) continue;
      try {
        ws.close(1008, reason);
        closed++;
      } catch {
        // Closing already.
      }
    }
    return closed;
  }

  /**
   * A frame the auto-response did not answer: "ping" only if auto-responses
   * are off (the runtime answers it otherwise); anything else is refused.
   */
  message(ws: WebSocket, data: string | ArrayBuffer): void {
    if (data === "ping") ws.send("pong");
    else ws.close(1003, "the watch channel accepts only the text frame 'ping'");
  }

  /** The scope's stream id and current seq; the row is made on the first watch. */
  private sequence(): { stream: string; seq: bigint } {
    const row = this.sql.exec(SCOPE_SQL.watchGet).toArray()[0];
    if (row) return { stream: row.stream as string, seq: BigInt(row.seq as number) };
    const stream = crypto.randomUUID();
    this.sql.exec(SCOPE_SQL.watchInit, stream);
    return { stream, seq: 0n };
  }
}
