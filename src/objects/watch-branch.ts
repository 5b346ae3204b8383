// WatchBranchObject: one branch of a scope's watch channel (watch/branch.ts),
// named by watch/branches.ts. Reached only by the Worker's GET /v1/watch (the
// upgrade) and by the scope's ScopeObject (deliveries, counts, revocations).
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";
import { billing, meteredSql } from "../metrics/billing.js";
import { completeClose } from "../rpc/socket-route.js";
import { WatchBranch } from "../watch/branch.js";
import { branchCapacity } from "../watch/branches.js";
import type { BranchItem, DeliverReply } from "../watch/root.js";
import { migrate } from "./migrations.js";
import { scopeFromObjectName } from "./scope-name.js";
import { scopeStub } from "./stubs.js";
import { WATCH_BRANCH_MIGRATIONS } from "./watch-branch-sql.js";

export class WatchBranchObject extends DurableObject<Env> {
  private branch: WatchBranch;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = meteredSql(ctx.storage.sql);
    migrate(ctx.storage, WATCH_BRANCH_MIGRATIONS);
    this.branch = new WatchBranch(
      ctx,
      sql,
      () => branchCapacity(env),
      (scope, name, token) => scopeStub(env, scopeFromObjectName(scope)).attachWatchBranch(name, token),
    );
  }

  /** Only the Worker's GET /v1/watch reaches this (watch/route.ts checked the caller and scope). */
  async fetch(request: Request): Promise<Response> {
    return this.branch.accept(request);
  }

  deliver(token: string, items: BranchItem[]): DeliverReply {
    return this.branch.deliver(token, items);
  }

  count(): number {
    return this.branch.count;
  }

  closeRelay(relay: string, reason: string): number {
    return this.branch.closeRelay(relay, reason);
  }

  async webSocketMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    billing.add("websocket_messages_in");
    this.branch.message(ws, data);
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    // The relay closed: complete the close handshake.
    completeClose(ws, code, reason);
  }

  async webSocketError(): Promise<void> {
    // The runtime drops the socket from getWebSockets(); its relay reconnects and resyncs.
  }
}
