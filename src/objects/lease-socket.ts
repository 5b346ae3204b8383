// The lease socket of a RelayObject (coordinator.proto, "The lease socket"):
// the relay's WebSocket, accepted for hibernation, pinged by the relay and
// answered by the runtime, so the object is neither woken nor billed while
// the relay is alive. When the relay was last heard is the last ping's
// auto-response timestamp, which the runtime keeps across hibernation. The
// RelayObject decides what a beat, a silence or a close does to the lease.
import { ConnectError } from "@connectrpc/connect";
import { connectErrorResponse } from "../rpc/router.js";
import { completeClose } from "../rpc/socket-route.js";
import type { Outcome } from "./types.js";

/** What the Worker's route (rpc/lease-route.ts) tells the object about the caller it checked. */
export const LEASE_SOCKET_HEADERS = {
  relay: "x-moq-lease-relay",
  epoch: "x-moq-lease-epoch",
  issuedAt: "x-moq-lease-issued-at",
  versions: "x-moq-lease-versions",
} as const;

/**
 * A closed lease socket ends the lease this long after, unless the relay is
 * back by then: long enough for a relay whose connection broke to reconnect
 * (edges retry within half a second), short enough that a crashed relay is
 * withdrawn within about a second and a half.
 */
export const CLOSE_GRACE_MS = 1000;

/**
 * A relay on the socket sends a HeartbeatRequest at least this often (its
 * peer-list refresh); the directory's entry for it is trusted that long past
 * its lease.
 */
export const SOCKET_BEAT_MS = 30_000;

/**
 * A socket older than this is closed after its next HeartbeatRequest, so that
 * the relay reopens it and its token (expiry, TOKEN_SECRET rotation) is
 * checked again.
 */
export const MAX_SOCKET_AGE_MS = 60 * 60_000;

/** The socket's caller, kept with it across hibernation. */
export interface LeaseOpen {
  relay: string;
  epoch: string;
  issuedAtMs: number;
  versions?: string[];
  openedAt: number;
}

export function leaseOpenOf(request: Request): Omit<LeaseOpen, "openedAt"> {
  const h = (name: string) => request.headers.get(name) ?? "";
  const versions = JSON.parse(h(LEASE_SOCKET_HEADERS.versions) || "null") as string[] | null;
  return {
    relay: h(LEASE_SOCKET_HEADERS.relay),
    epoch: h(LEASE_SOCKET_HEADERS.epoch),
    issuedAtMs: Number(h(LEASE_SOCKET_HEADERS.issuedAt)),
    ...(versions === null ? {} : { versions }),
  };
}

/** Close codes: 4000 + the Connect code of the refusal, as the edge reads them. */
export const closeCodeOf = (code: number) => 4000 + code;

/** A close reason fits 123 bytes of UTF-8; longer messages are cut. */
export function closeReason(message: string): string {
  const bytes = new TextEncoder().encode(message);
  return bytes.length <= 123 ? message : new TextDecoder().decode(bytes.slice(0, 120)).replace(/\uFFFD$/, "");
}

export class LeaseSockets {
  constructor(private readonly ctx: DurableObjectState) {
    // Answered by the runtime: a relay's pings neither wake nor bill the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  /** The open sockets, but `except` (the one being closed). */
  open(except?: WebSocket): WebSocket[] {
    return this.ctx.getWebSockets().filter((ws) => ws !== except && ws.readyState === WebSocket.OPEN);
  }

  /** When the relay was last heard on an open socket (its last ping, or the opening); null = no socket. */
  seenAt(except?: WebSocket): number | null {
    let seen: number | null = null;
    for (const ws of this.open(except)) seen = Math.max(seen ?? 0, this.heardAt(ws));
    return seen;
  }

  /** When the relay was last heard on `ws` (open or closing): its last ping, or the opening. */
  heardAt(ws: WebSocket): number {
    return Math.max(this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0, this.of(ws).openedAt);
  }

  of(ws: WebSocket): LeaseOpen {
    return ws.deserializeAttachment() as LeaseOpen;
  }

  /** Accepts the relay's socket (one per relay: an older one is closed), or answers the refusal. */
  accept(open: LeaseOpen, refused: Outcome<never> | null): Response {
    if (refused && !refused.ok) return connectErrorResponse(new ConnectError(refused.message, refused.code));
    this.closeAll(1000, "replaced by a newer lease socket of this relay");
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment(open);
    return new Response(null, { status: 101, webSocket: client });
  }

  /** Closes the open sockets, but those of the epoch `keep` when given (a process of another epoch). */
  closeAll(code: number, reason: string, keep?: string): void {
    for (const ws of this.open()) {
      if (keep !== undefined && this.of(ws).epoch === keep) continue;
      completeClose(ws, code, reason);
    }
  }
}
