// The units Cloudflare bills, counted by this isolate as it serves them, for
// GET /metrics and the cost benchmark (bench/cost.mjs; prices and how the
// units become dollars: docs/performance.md "Cost"). Per isolate, like
// registry.ts: locally the Worker and its objects share one isolate, so the
// counts are the whole bill; in production they are one isolate's share.
import { escapeLabel } from "./registry.js";

export const BILLABLE_UNITS = [
  /** Invocations of the Worker's fetch handler. */
  "worker_requests",
  /** Calls into Durable Objects: each stub made (one call per stub, objects/stubs.ts) and each alarm. */
  "object_requests",
  /** Of those, alarm invocations. */
  "object_alarms",
  /** WebSocket messages that reached an object's handler (billed 20:1); runtime auto-responses never do. */
  "websocket_messages_in",
  /** Rows read and written by SQL statements, from each cursor's own counters. */
  "rows_read",
  "rows_written",
  /** setAlarm calls: the alarm is kept in the object's storage, counted here as one row written each. */
  "alarms_set",
] as const;

export type BillableUnit = (typeof BILLABLE_UNITS)[number];

/** The Durable Object classes, for object requests by class (the directory is one object: its load exactly). */
export const OBJECT_KINDS = [
  "ScopeObject",
  "RelayObject",
  "PathObject",
  "DirectoryObject",
  "WatchBranchObject",
  "PeerShardObject",
  "LeaseClockObject",
] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];

/** Objects counted by name (moq_worker_object_calls_top): the busiest, whatever their class. */
export const TOP_OBJECTS = 16;
/** Object names longer than this are cut in the label (relay URLs may be long). */
const MAX_OBJECT_LABEL_CHARS = 200;

interface TopEntry {
  kind: ObjectKind;
  name: string;
  /** Calls counted, an overcount by at most `error`. */
  count: number;
  /** Calls the entry may have inherited from the one it replaced. */
  error: number;
}

/**
 * Calls per object for the `size` busiest objects, by the space-saving
 * algorithm (Metwally, Agrawal, El Abbadi, 2005): a call to a tracked object
 * adds one; a call to an untracked one, when all `size` entries are taken,
 * replaces the entry with the fewest calls and starts from its count + 1
 * (that count kept as the entry's `error`). Any object with more than
 * 1/size of the calls is always tracked, and its count is at most `error`
 * too high; so a singleton (the directory) or a hot scope is named with its
 * load, however many relays' objects pass through the other entries. Cost:
 * a Map lookup per call, and a scan of `size` entries when an untracked
 * object is called.
 */
export class TopObjects {
  private entries = new Map<string, TopEntry>();

  constructor(private readonly size: number) {}

  add(kind: ObjectKind, name: string): void {
    const key = `${kind}\u0000${name}`;
    const entry = this.entries.get(key);
    if (entry) {
      entry.count++;
      return;
    }
    if (this.entries.size < this.size) {
      this.entries.set(key, { kind, name, count: 1, error: 0 });
      return;
    }
    let minKey = "";
    let min: TopEntry | undefined;
    for (const [k, e] of this.entries) {
      if (!min || e.count < min.count) {
        min = e;
        minKey = k;
      }
    }
    if (!min) return;
    this.entries.delete(minKey);
    this.entries.set(key, { kind, name, count: min.count + 1, error: min.count });
  }

  /** The tracked objects, busiest first. */
  list(): TopEntry[] {
    return [...this.entries.values()].sort((a, b) => b.count - a.count).map((e) => ({ ...e }));
  }
}

class Billing {
  private counts = new Map<BillableUnit, number>(BILLABLE_UNITS.map((u) => [u, 0]));
  private byKind = new Map<ObjectKind, number>(OBJECT_KINDS.map((k) => [k, 0]));
  readonly top = new TopObjects(TOP_OBJECTS);

  /** A call to the object `name` of class `kind` (object_requests, by class, and by object for the busiest). */
  objectRequest(kind: ObjectKind, name: string): void {
    this.add("object_requests");
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
    this.top.add(kind, name);
  }

  add(unit: BillableUnit, n = 1): void {
    if (n > 0) this.counts.set(unit, (this.counts.get(unit) ?? 0) + n);
  }

  /** Object requests made to one class so far. */
  calls(kind: ObjectKind): number {
    return this.byKind.get(kind) ?? 0;
  }

  get(unit: BillableUnit): number {
    return this.counts.get(unit) ?? 0;
  }

  /** Prometheus text exposition: one counter, a label per unit. */
  render(): string {
    const lines = [
      "# HELP moq_worker_billable_units_total Units Cloudflare bills, as this isolate served them (docs/performance.md, Cost).",
      "# TYPE moq_worker_billable_units_total counter",
    ];
    for (const unit of BILLABLE_UNITS) lines.push(`moq_worker_billable_units_total{unit="${unit}"} ${this.get(unit)}`);
    lines.push(
      "# HELP moq_worker_object_calls_total Calls this isolate made to Durable Objects, by class (alarms not included).",
      "# TYPE moq_worker_object_calls_total counter",
    );
    for (const kind of OBJECT_KINDS) lines.push(`moq_worker_object_calls_total{class="${kind}"} ${this.byKind.get(kind) ?? 0}`);
    // Gauges, not counters: an object that drops out of the top loses its series.
    const top = this.top.list();
    const label = (e: TopEntry) => `class="${e.kind}",object="${escapeLabel(e.name.slice(0, MAX_OBJECT_LABEL_CHARS))}"`;
    lines.push(
      `# HELP moq_worker_object_calls_top Calls this isolate made to each of its ${TOP_OBJECTS} busiest Durable Objects (space-saving count: at most moq_worker_object_calls_top_error too high; alarms not included).`,
      "# TYPE moq_worker_object_calls_top gauge",
    );
    for (const e of top) lines.push(`moq_worker_object_calls_top{${label(e)}} ${e.count}`);
    lines.push(
      "# HELP moq_worker_object_calls_top_error How much moq_worker_object_calls_top may overcount each object (calls inherited from the object it replaced).",
      "# TYPE moq_worker_object_calls_top_error gauge",
    );
    for (const e of top) lines.push(`moq_worker_object_calls_top_error{${label(e)}} ${e.error}`);
    return `${lines.join("\n")}\n`;
  }
}

export const billing = new Billing();

/**
 * An object's SQL with every statement's rows counted. The counts are read a
 * microtask after exec returns: the code here consumes a cursor in the same
 * synchronous run that made it (toArray, one, rowsWritten), so by then they
 * are final.
 */
export function meteredSql(sql: SqlStorage): SqlStorage {
  const exec = sql.exec.bind(sql);
  const metered = ((query: string, ...bindings: unknown[]) => {
    const cursor = exec(query, ...bindings);
    queueMicrotask(() => {
      billing.add("rows_read", cursor.rowsRead);
      billing.add("rows_written", cursor.rowsWritten);
    });
    return cursor;
  }) as SqlStorage["exec"];
  return new Proxy(sql, { get: (target, key) => (key === "exec" ? metered : Reflect.get(target, key, target)) });
}

/** Sets the object's alarm, counted (alarms_set). */
export function armAlarm(storage: DurableObjectStorage, at: number): Promise<void> {
  billing.add("alarms_set");
  return storage.setAlarm(at);
}

/** An alarm invocation: a billed request to the object. */
export function countAlarm(): void {
  billing.add("object_requests");
  billing.add("object_alarms");
}
