// The units Cloudflare bills, counted by this isolate as it serves them, for
// GET /metrics and the cost benchmark (bench/cost.mjs; prices and how the
// units become dollars: docs/performance.md "Cost"). Per isolate, like
// registry.ts: locally the Worker and its objects share one isolate, so the
// counts are the whole bill; in production they are one isolate's share.

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

class Billing {
  private counts = new Map<BillableUnit, number>(BILLABLE_UNITS.map((u) => [u, 0]));
  private byKind = new Map<ObjectKind, number>(OBJECT_KINDS.map((k) => [k, 0]));

  /** A call to an object of class `kind` (object_requests, and by class). */
  objectRequest(kind: ObjectKind): void {
    this.add("object_requests");
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
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
