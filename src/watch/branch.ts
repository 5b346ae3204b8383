// A branch of a scope's watch channel, inside a WatchBranchObject: holds the
// sockets of the relays the Worker sends to it (watch/route.ts), with the
// hibernation API, and passes each change the root sends (watch/root.ts) on
// to every socket. The relay sees the same frames as if it were connected to
// the scope itself: same stream, same seq, same rules (watch.proto).
//
// A socket is greeted with hello at the seq the branch passed on last: the
// root sends the branch every later change, so rule 1 holds. While the
// branch waits for its first sync (just attached) its sockets wait for
// hello. A gap in the seqs it is sent, or a sync ahead of it, means it may
// have missed a change: it closes every socket (their relays resync) and
// goes on from the new seq.
//
// Pings are answered by the runtime's auto-response, so an idle watcher never
// wakes the branch, and a branch that no change reaches costs no CPU.
import { Code, ConnectError } from "@connectrpc/connect";
import { WATCH_BRANCH_SQL } from "../objects/watch-branch-sql.js";
import { connectErrorResponse } from "../rpc/router.js";
import { helloFrame } from "./frames.js";
import type { BranchItem, DeliverReply } from "./root.js";

/** Set by the Worker's route on the request it forwards: the watching relay. */
export const WATCH_RELAY_HEADER = "moq-watch-relay";
/** The scope's object name (objects/scope-name.ts). */
export const WATCH_SCOPE_HEADER = "moq-watch-scope";
/** This branch's object name (watch/branches.ts). */
export const WATCH_BRANCH_HEADER = "moq-watch-branch";

/** Hibernation tags are at most 256 characters; a longer relay URL goes untagged. */
const MAX_TAG_CHARS = 256;
/** Close code of a resync: the relay reconnects and starts again from hello. */
const RESYNC_CODE = 1012;
/** Attempts at attaching to the root before the waiting sockets are closed. */
const ATTACH_ATTEMPTS = 3;

interface BranchState {
  scope: string;
  name: string;
  /** The attachment the root knows this branch by; null = detached. */
  token: string | null;
  /** null while waiting for the first sync. */
  stream: string | null;
  seq: number;
}

export class WatchBranch {
  private state: BranchState | null;
  /** The token an attach is in flight for (null: none). */
  private attaching: string | null = null;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly sql: SqlStorage,
    /** Sockets this branch admits (its share of MAX_WATCHERS_PER_SCOPE). */
    private readonly capacity: () => number,
    /** Asks the scope's root for every change from now on (ScopeObject.attachWatchBranch). */
    private readonly attach: (scope: string, name: string, token: string) => Promise<void>,
  ) {
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    const row = sql.exec(WATCH_BRANCH_SQL.get).toArray()[0];
    this.state = row
      ? {
          scope: row.scope as string,
          name: row.name as string,
          token: row.token as string | null,
          stream: row.stream as string | null,
          seq: row.seq as number,
        }
      : null;
  }

  /** Open sockets. */
  get count(): number {
    return this.ctx.getWebSockets().length;
  }

  /** A relay's upgrade, checked by the Worker already: accepted, or refused when the branch is full. */
  accept(request: Request): Response {
    const relay = request.headers.get(WATCH_RELAY_HEADER) ?? "";
    const scope = request.headers.get(WATCH_SCOPE_HEADER) ?? "";
    const name = request.headers.get(WATCH_BRANCH_HEADER) ?? "";
    const open = this.count;
    const max = this.capacity();
    if (open >= max) {
      return connectErrorResponse(
        new ConnectError(
          `scope: ${open} watch sockets are open on this scope's branch ${name}, the most allowed (MAX_WATCHERS_PER_SCOPE / WATCH_BRANCHES)`,
          Code.ResourceExhausted,
        ),
      );
    }
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, relay.length > 0 && relay.length <= MAX_TAG_CHARS ? [relay] : []);
    // Survives hibernation; closeRelay finds the relay's sockets by it.
    server.serializeAttachment({ relay });
    const state = this.state ?? { scope, name, token: null, stream: null, seq: 0 };
    if (state.token !== null && state.stream !== null) {
      server.send(helloFrame(state.stream, state.seq));
    } else {
      if (state.token === null) {
        state.token = crypto.randomUUID();
        state.stream = null;
      }
      this.save(state);
      void this.attachToRoot(state.token);
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  /** What the root sends, in order; see BranchItem. */
  deliver(token: string, items: BranchItem[]): DeliverReply {
    const state = this.state;
    if (state === null || state.token !== token) return "gone";
    const sockets = this.ctx.getWebSockets();
    if (sockets.length === 0) {
      // Nobody to pass changes to: detached, so the root stops sending them.
      this.save({ ...state, token: null, stream: null });
      return "gone";
    }
    const before = { stream: state.stream, seq: state.seq };
    for (const item of items) {
      if (item.kind === "sync") {
        if (state.stream === null) {
          state.stream = item.stream;
          state.seq = item.seq;
          const hello = helloFrame(item.stream, item.seq);
          for (const ws of sockets) send(ws, hello);
        } else if (item.stream !== state.stream || item.seq > state.seq) {
          resync(sockets, "the watch branch missed a change");
          state.stream = item.stream;
          state.seq = item.seq;
        }
      } else if (state.stream !== null && item.seq > state.seq) {
        if (item.seq !== state.seq + 1) resync(sockets, "the watch branch missed a change");
        else for (const ws of sockets) send(ws, item.frame);
        state.seq = item.seq;
      }
    }
    if (state.stream !== before.stream || state.seq !== before.seq) this.save(state);
    return "ok";
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

  /** Attaches with `token`, retried; if the root cannot be reached, the waiting sockets are closed (their relays retry). */
  private async attachToRoot(token: string): Promise<void> {
    if (this.attaching === token) return;
    this.attaching = token;
    try {
      for (let attempt = 1; ; attempt++) {
        const state = this.state;
        if (state === null || state.token !== token) return;
        try {
          await this.attach(state.scope, state.name, token);
          return;
        } catch (err) {
          if (attempt >= ATTACH_ATTEMPTS) {
            console.warn(`watch branch: not attached to the scope's root: ${String(err)}`);
            if (this.state?.token === token && this.state.stream === null) {
              resync(this.ctx.getWebSockets(), "the scope's watch channel is unavailable");
              this.save({ ...this.state, token: null });
            }
            return;
          }
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
    } finally {
      if (this.attaching === token) this.attaching = null;
    }
  }

  private save(state: BranchState): void {
    this.state = state;
    this.sql.exec(WATCH_BRANCH_SQL.put, state.scope, state.name, state.token, state.stream, state.seq);
  }
}

function send(ws: WebSocket, frame: Uint8Array | string): void {
  try {
    ws.send(frame);
  } catch {
    // Closing already: its relay resyncs on reconnecting.
  }
}

function resync(sockets: WebSocket[], reason: string): void {
  for (const ws of sockets) {
    try {
      ws.close(RESYNC_CODE, reason);
    } catch {
      // Closing already.
    }
  }
}
