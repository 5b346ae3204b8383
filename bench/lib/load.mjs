// The load generator: a fixed number of workers, each with one HTTP/1.1
// keep-alive connection, sending its next request as soon as the previous
// answer is read (closed loop). The same code drives every system.
//
// A run is either timed (warmup, then durationMs measured) or counted (total
// requests, used for seeding). Any answer whose status the operation does not
// expect counts as an error; runLoad throws on errors unless allowErrors is
// set, so a broken system or harness fails the bench instead of producing a
// fast-looking number.
import http from "node:http";

/**
 * @typedef {{ method: string, path: string, headers?: Record<string,string>, body?: Buffer }} Req
 * @typedef {{ name: string, request: (i: number) => Req, expect: number | number[] }} Op
 */

/** Sends one request on the agent (aborted by `signal` when given); resolves with {status, body}. */
export function send(agent, base, req, signal) {
  return new Promise((resolve, reject) => {
    const headers = { ...(req.headers ?? {}) };
    if (req.body) headers["content-length"] = String(req.body.length);
    const r = http.request({ agent, host: base.hostname, port: base.port, method: req.method, path: req.path, headers, signal }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    r.on("error", reject);
    r.end(req.body);
  });
}

/** Runs `fn` over `items` (with each one's index) with at most `limit` in flight. */
export async function pool(items, limit, fn) {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(runners);
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

/**
 * Runs one operation against baseUrl.
 * @param {object} o
 * @param {string} o.baseUrl
 * @param {Op} o.op
 * @param {number} o.concurrency
 * @param {number} [o.durationMs]   measured time (timed mode)
 * @param {number} [o.warmupMs]     unmeasured time first (timed mode)
 * @param {number} [o.total]        request count (counted mode)
 * @param {number} [o.start]        first request index (ops derive keys from it)
 * @param {boolean} [o.allowErrors]
 * @param {() => number} [o.serverCpuMs]  CPU time used so far by the system under test
 */
export async function runLoad({ baseUrl, op, concurrency, durationMs, warmupMs = 0, total, start = 0, allowErrors = false, serverCpuMs }) {
  const base = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  const expected = new Set(Array.isArray(op.expect) ? op.expect : [op.expect]);
  let next = start;
  let measuring = total !== undefined;
  let stop = false;
  let lat = new Float64Array(1 << 16);
  let n = 0;
  let errors = 0;
  const samples = [];
  const statuses = {};
  let t0 = performance.now();

  const worker = async () => {
    while (!stop) {
      if (total !== undefined && next >= start + total) return;
      const i = next++;
      const req = op.request(i);
      const a = performance.now();
      let res;
      try {
        res = await send(agent, base, req);
      } catch (e) {
        res = { status: 0, body: Buffer.from(String(e?.message ?? e)) };
      }
      const ms = performance.now() - a;
      if (!measuring) continue;
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      if (!expected.has(res.status)) {
        errors++;
        if (samples.length < 3) samples.push(`${req.method} ${req.path} -> ${res.status} ${res.body.toString("utf8").slice(0, 200)}`);
      }
      if (n === lat.length) {
        const bigger = new Float64Array(lat.length * 2);
        bigger.set(lat);
        lat = bigger;
      }
      lat[n++] = ms;
    }
  };

  let cpu0 = serverCpuMs?.();
  let client0 = process.cpuUsage();
  const workers = Array.from({ length: concurrency }, worker);
  if (total === undefined) {
    await new Promise((r) => setTimeout(r, warmupMs));
    measuring = true;
    t0 = performance.now();
    cpu0 = serverCpuMs?.();
    client0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, durationMs));
    stop = true;
  }
  await Promise.all(workers);
  const elapsed = performance.now() - t0;
  const serverCpu = serverCpuMs ? serverCpuMs() - cpu0 : undefined;
  const client = process.cpuUsage(client0);
  agent.destroy();

  const sorted = lat.subarray(0, n).sort();
  let sum = 0;
  for (let k = 0; k < n; k++) sum += sorted[k];
  const result = {
    op: op.name,
    concurrency,
    requests: n,
    errors,
    statuses,
    seconds: +(elapsed / 1000).toFixed(3),
    rps: +(n / (elapsed / 1000)).toFixed(1),
    p50Ms: +percentile(sorted, 50).toFixed(3),
    p90Ms: +percentile(sorted, 90).toFixed(3),
    p99Ms: +percentile(sorted, 99).toFixed(3),
    meanMs: +(sum / Math.max(1, n)).toFixed(3),
    maxMs: +(sorted[n - 1] ?? NaN).toFixed(3),
    // CPU per request: the server's processes (all threads), and this load generator.
    serverCpuUsPerReq: serverCpu === undefined ? undefined : +((serverCpu * 1000) / Math.max(1, n)).toFixed(1),
    serverCores: serverCpu === undefined ? undefined : +(serverCpu / elapsed).toFixed(2),
    clientCpuUsPerReq: +((client.user + client.system) / Math.max(1, n)).toFixed(1),
    next,
  };
  if (errors > 0 && !allowErrors) {
    const err = new Error(`${op.name}: ${errors} of ${n} answers were not ${[...expected].join("/")}:\n  ${samples.join("\n  ")}`);
    err.result = result;
    throw err;
  }
  return result;
}
