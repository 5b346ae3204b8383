// Per-RPC counters and latency histograms, kept in memory by each isolate and
// rendered in the Prometheus text exposition format for GET /metrics.
//
// Per isolate means: each Worker isolate counts what it served since it
// started. Locally (wrangler dev) that is one isolate, so /metrics is the
// whole picture; in production, requests spread over many isolates and the
// Analytics Engine dataset (record.ts) is the place for totals.

/** Latency buckets, in seconds (Prometheus `le` bounds). */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface MethodStats {
  /** Calls by Connect code ("ok" for success). */
  codes: Map<string, number>;
  /** Cumulative counts per LATENCY_BUCKETS bound (the +Inf bucket is the total). */
  buckets: number[];
  count: number;
  sumSeconds: number;
}

export class RpcMetrics {
  private methods = new Map<string, MethodStats>();
  /** Calls refused by a rate limit, by bucket (auth/rate-limit.ts). */
  private rateLimited = new Map<string, number>();
  readonly startedAt = Date.now();

  record(service: string, method: string, code: string, seconds: number): void {
    const key = `${service}\u0000${method}`;
    let stats = this.methods.get(key);
    if (!stats) {
      stats = { codes: new Map(), buckets: LATENCY_BUCKETS.map(() => 0), count: 0, sumSeconds: 0 };
      this.methods.set(key, stats);
    }
    stats.codes.set(code, (stats.codes.get(code) ?? 0) + 1);
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]) stats.buckets[i]++;
    stats.count++;
    stats.sumSeconds += seconds;
  }

  refused(bucket: string): void {
    this.rateLimited.set(bucket, (this.rateLimited.get(bucket) ?? 0) + 1);
  }

  /** Prometheus text format, version 0.0.4. */
  render(): string {
    const entries = [...this.methods.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const labels = (key: string, extra = "") => {
      const [service, method] = key.split("\u0000");
      return `service="${escapeLabel(service)}",method="${escapeLabel(method)}"${extra}`;
    };
    const out: string[] = [
      '# HELP moq_worker_rpc_requests_total RPCs served by this isolate, by method and Connect code (code="ok" is success).',
      "# TYPE moq_worker_rpc_requests_total counter",
    ];
    for (const [key, s] of entries) {
      for (const [code, n] of [...s.codes.entries()].sort()) {
        out.push(`moq_worker_rpc_requests_total{${labels(key, `,code="${escapeLabel(code)}"`)}} ${n}`);
      }
    }
    out.push(
      "# HELP moq_worker_rpc_errors_total RPCs of this isolate that failed, by method and Connect code.",
      "# TYPE moq_worker_rpc_errors_total counter",
    );
    for (const [key, s] of entries) {
      for (const [code, n] of [...s.codes.entries()].sort()) {
        if (code !== "ok") out.push(`moq_worker_rpc_errors_total{${labels(key, `,code="${escapeLabel(code)}"`)}} ${n}`);
      }
    }
    out.push(
      "# HELP moq_worker_rpc_duration_seconds Wall time from request to response, by method.",
      "# TYPE moq_worker_rpc_duration_seconds histogram",
    );
    for (const [key, s] of entries) {
      LATENCY_BUCKETS.forEach((le, i) => {
        out.push(`moq_worker_rpc_duration_seconds_bucket{${labels(key, `,le="${le}"`)}} ${s.buckets[i]}`);
      });
      out.push(`moq_worker_rpc_duration_seconds_bucket{${labels(key, ',le="+Inf"')}} ${s.count}`);
      out.push(`moq_worker_rpc_duration_seconds_sum{${labels(key)}} ${s.sumSeconds}`);
      out.push(`moq_worker_rpc_duration_seconds_count{${labels(key)}} ${s.count}`);
    }
    out.push(
      "# HELP moq_worker_rate_limited_total Calls this isolate refused with RESOURCE_EXHAUSTED for a rate limit, by bucket (relay, heartbeat, admin).",
      "# TYPE moq_worker_rate_limited_total counter",
    );
    for (const [bucket, n] of [...this.rateLimited.entries()].sort()) {
      out.push(`moq_worker_rate_limited_total{bucket="${escapeLabel(bucket)}"} ${n}`);
    }
    out.push(
      "# HELP moq_worker_isolate_start_time_seconds When this isolate's counters started (they restart with it).",
      "# TYPE moq_worker_isolate_start_time_seconds gauge",
      `moq_worker_isolate_start_time_seconds ${this.startedAt / 1000}`,
    );
    return `${out.join("\n")}\n`;
  }
}

/** A Prometheus label value, escaped. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** This isolate's counters. */
export const rpcMetrics = new RpcMetrics();
