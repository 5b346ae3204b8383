// The root of a scope's watch channel, inside its ScopeObject: the change
// sequence, and the branches (watch/branch.ts) that hold the relays' sockets.
// A change is one frame, made once and sent to each branch, never to each
// socket: the scope's cost per change is bounded by WATCH_BRANCHES, whatever
// the number of watchers (docs/performance.md "Watch channel").
//
// The sequence lives in SQLite (the `watch` row) and is bumped by the
// synchronous code that made the change, with no await between: the runtime
// commits both writes together, and the frames leave only once they are
// stored (output gate).
//
// Delivery to a branch is ordered (one call in flight, later frames batched
// behind it) and retried until it lands: a branch drops frames it has by
// seq, so a retry never repeats one. The queues are in memory. A root that
// starts (after an eviction, or a crash that may have lost frames) first
// sends every branch a sync with the current seq, ordered before any frame;
// a branch that is behind closes its sockets, whose relays then resync
// (watch.proto rule 2). So a lost frame is never silently missed. Frames
// that had to wait, or a delivery that failed, also ask for the scope's
// alarm (WATCH_RECHECK_MS later), which syncs every branch again: a quiet
// scope whose object was reset with frames still queued is not left with
// branches that never learn of them.
import { SCOPE_SQL } from "../objects/scope-sql.js";
import { type Invalidation, invalidateFrame } from "./frames.js";

/** What a branch is sent, in order. */
export type BranchItem =
  /** A change: its frame, sent as it is to each greeted socket. */
  | { kind: "frame"; seq: number; frame: Uint8Array }
  /** The sequence as the root has it now: a branch behind it missed a frame. */
  | { kind: "sync"; stream: string; seq: number };

/** A branch's answer: "gone" when the token is not its attachment (or it has no socket left): the root forgets it. */
export type DeliverReply = "ok" | "gone";

/** How the root reaches a branch, by its object name (the ScopeObject gives its env). */
export interface BranchPort {
  deliver(name: string, token: string, items: BranchItem[]): Promise<DeliverReply>;
  count(name: string): Promise<number>;
  closeRelay(name: string, relay: string, reason: string): Promise<number>;
}

/** Items per delivery call; more wait for the next. */
const BATCH = 256;
/** Past this many items waiting for one branch, they are replaced by a sync: the branch resyncs its sockets. */
const MAX_QUEUED = 4096;
/** How soon after frames waited or a delivery failed the scope's alarm syncs every branch again. */
export const WATCH_RECHECK_MS = 10_000;
/** Retry delays of a failed delivery: doubling from this, up to the cap. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 10_000;

interface Branch {
  token: string;
  queue: BranchItem[];
  sending: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class WatchRoot {
  /** The attached branches by object name: the table as stored, with the items each still has to get. */
  private branches = new Map<string, Branch>();
  /** When the owner was last asked for a recheck (memory: at most one ask per WATCH_RECHECK_MS). */
  private recheckAskedAt = 0;

  constructor(
    private readonly sql: SqlStorage,
    private readonly port: BranchPort,
    /** Arms the owner's alarm WATCH_RECHECK_MS from now; the alarm calls syncAll(). */
    private readonly recheck: () => void = () => undefined,
  ) {
    for (const row of sql.exec(SCOPE_SQL.branchesAll).toArray()) {
      this.branches.set(row.name as string, { token: row.token as string, queue: [], sending: false });
    }
    // A fresh instance does not know what its previous one sent: every branch checks its seq first.
    this.syncAll();
  }

  /** Whether any branch is attached: a change nobody watches bumps nothing and lists nothing. */
  get watched(): boolean {
    return this.branches.size > 0;
  }

  /**
   * A branch with its first socket (or after it was forgotten) asks for the
   * changes from now on. Its first item is a sync with the current seq, which
   * greets the sockets waiting for it; every later change follows in order.
   * Repeating it with the same token is harmless (one more sync).
   */
  attach(name: string, token: string): void {
    this.sql.exec(SCOPE_SQL.branchPut, name, token);
    // A new attachment: what was queued for the old one is of no use to it
    // (the branch refuses the old token, so a call still in flight is harmless).
    if (this.branches.get(name)?.token !== token) this.branches.set(name, { token, queue: [], sending: false });
    this.enqueue(name, this.syncItem());
  }

  /** Something that may alter an answer changed: bump the sequence and queue the frame for every branch. */
  changed(what: Invalidation): void {
    if (this.branches.size === 0) return;
    const seq = this.sql.exec(SCOPE_SQL.watchBump).one().seq as number;
    const item: BranchItem = { kind: "frame", seq, frame: invalidateFrame(seq, what) };
    for (const name of this.branches.keys()) this.enqueue(name, item);
  }

  /** Every branch checks its seq against the current one (the owner's alarm, after frames waited). */
  syncAll(): void {
    if (this.branches.size === 0) return;
    const sync = this.syncItem();
    for (const name of this.branches.keys()) this.enqueue(name, sync);
  }

  /** Open sockets over every branch (a branch that does not answer counts 0). */
  async watchers(): Promise<number> {
    const counts = await Promise.all([...this.branches.keys()].map((name) => this.port.count(name).catch(() => 0)));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Closes the relay's sockets on every branch; how many (a branch that does not answer counts 0, and is logged). */
  async closeRelay(relay: string, reason: string): Promise<number> {
    const closed = await Promise.all(
      [...this.branches.keys()].map((name) =>
        this.port.closeRelay(name, relay, reason).catch((err: unknown) => {
          console.warn(`watch root: branch ${name} did not close ${relay}'s sockets: ${String(err)}`);
          return 0;
        }),
      ),
    );
    return closed.reduce((a, b) => a + b, 0);
  }

  /** The scope's stream id and current seq; the row is made on the first attachment. */
  private syncItem(): BranchItem {
    const row = this.sql.exec(SCOPE_SQL.watchGet).toArray()[0];
    if (row) return { kind: "sync", stream: row.stream as string, seq: row.seq as number };
    const stream = crypto.randomUUID();
    this.sql.exec(SCOPE_SQL.watchInit, stream);
    return { kind: "sync", stream, seq: 0 };
  }

  private enqueue(name: string, item: BranchItem): void {
    const branch = this.branches.get(name);
    if (!branch) return;
    branch.queue.push(item);
    if (branch.queue.length > MAX_QUEUED) branch.queue = [this.syncItem()];
    if (!branch.sending) void this.send(name, branch);
    else this.askRecheck();
  }

  private askRecheck(): void {
    const now = Date.now();
    if (now - this.recheckAskedAt < WATCH_RECHECK_MS) return;
    this.recheckAskedAt = now;
    this.recheck();
  }

  /** Sends the branch its queue, one call at a time, until it is empty or the branch is replaced or gone. */
  private async send(name: string, branch: Branch): Promise<void> {
    branch.sending = true;
    let failures = 0;
    try {
      while (branch.queue.length > 0 && this.branches.get(name) === branch) {
        const items = branch.queue.splice(0, BATCH);
        let reply: DeliverReply;
        try {
          reply = await this.port.deliver(name, branch.token, items);
        } catch (err) {
          // Back in front, to be sent again: whatever of them arrived, the branch drops by seq.
          branch.queue.unshift(...items);
          if (branch.queue.length > MAX_QUEUED) branch.queue = [this.syncItem()];
          failures++;
          this.askRecheck();
          console.warn(`watch root: branch ${name} not reached (${failures}): ${String(err)}`);
          await sleep(Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (failures - 1)));
          continue;
        }
        failures = 0;
        if (reply === "gone") {
          this.sql.exec(SCOPE_SQL.branchForget, name, branch.token);
          if (this.branches.get(name) === branch) this.branches.delete(name);
        }
      }
    } finally {
      branch.sending = false;
    }
  }
}
