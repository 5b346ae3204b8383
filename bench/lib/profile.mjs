// Where moq-worker's time goes, from two profilers:
//  - V8's sampling CPU profiler, over the inspector protocol of workerd, for
//    the Worker's JavaScript (including native calls made from it). Samples
//    are attributed to the bundled module they ran in, using the
//    `// path/to/module` comments esbuild leaves in the bundle, then grouped
//    into areas (HTTP/Hono, JWT, Connect, protobuf, handlers, Durable Object,
//    SQL, GC, ...).
//  - Linux perf (when present) for the whole workerd process, native frames
//    grouped by subsystem, to see SQLite, crypto, memory and kernel time that
//    the JS profiler only sees as "(program)".
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

// ---- V8 CPU profile over the inspector ----------------------------------------

function connect(url) {
  const ws = new WebSocket(url);
  let id = 0;
  const pending = new Map();
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.id && pending.has(m.id)) {
      const { resolve, reject } = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) reject(new Error(`${m.error.message}`));
      else resolve(m.result);
    }
  };
  const open = new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`inspector: cannot connect to ${url}`));
  });
  return {
    open,
    send: (method, params = {}) =>
      new Promise((resolve, reject) => {
        const i = ++id;
        pending.set(i, { resolve, reject });
        ws.send(JSON.stringify({ id: i, method, params }));
      }),
    close: () => ws.close(),
  };
}

/** Profiles the isolate `target` (e.g. "main") of a workerd inspector while `during()` runs. */
export async function cpuProfile({ inspectorPort, target, intervalUs = 250, during }) {
  const list = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const t = list.find((x) => x.id === target) ?? list.find((x) => x.id.endsWith(target));
  if (!t) throw new Error(`inspector: no target ${target} among ${list.map((x) => x.id).join(", ")}`);
  const c = connect(t.webSocketDebuggerUrl ?? `ws://127.0.0.1:${inspectorPort}/${t.id}`);
  await c.open;
  await c.send("Profiler.enable");
  await c.send("Profiler.setSamplingInterval", { interval: intervalUs });
  await c.send("Profiler.start");
  let result;
  let profile;
  try {
    result = await during();
  } finally {
    ({ profile } = await c.send("Profiler.stop"));
    c.close();
  }
  return { profile, result };
}

/** Line number (0-based) → module path, from esbuild's `// path` comments. */
function moduleIndex(bundleSource) {
  const starts = [];
  const lines = bundleSource.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^\/\/ ((?:\.\.\/)*[^\s]+\.(?:m?js|ts))$/.exec(lines[i]);
    if (m) starts.push([i, m[1].replace(/^(\.\.\/)+/, "").replace(/^.*node_modules\//, "node_modules/")]);
  }
  return (line) => {
    let lo = 0;
    let hi = starts.length - 1;
    let found = "(bundle prelude)";
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid][0] <= line) {
        found = starts[mid][1];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  };
}

const SQL_NATIVE = new Set(["exec", "toArray", "one", "raw", "next", "columnNames", "rowsRead", "rowsWritten"]);

/** The area a bundled module belongs to. */
function areaOfModule(mod) {
  if (/hono\/dist\/(utils\/jwt|middleware\/jwt|utils\/encode|helper\/adapter)/.test(mod) || mod.startsWith("src/auth/relay-token")) {
    return "JWT verification (hono/jwt, WebCrypto HMAC)";
  }
  if (mod.startsWith("node_modules/hono/")) return "HTTP routing: Hono";
  if (mod.startsWith("node_modules/@connectrpc/")) return "connect-es (interceptors, error JSON)";
  if (mod.startsWith("node_modules/@bufbuild/") || mod.startsWith("src/gen/")) return "protobuf decode/encode";
  if (mod.startsWith("src/auth/") || mod === "src/index.ts" || mod === "src/rpc/callers.ts")
    return "Worker entry + bearer parsing (src/index.ts, src/auth, src/rpc/callers.ts)";
  if (mod === "src/rpc/router.ts" || mod.startsWith("src/metrics/"))
    return "request pipeline: body, decode, encode, metrics (src/rpc/router.ts, src/metrics)";
  if (mod.startsWith("src/rpc/")) return "RPC handlers, incl. calling the Durable Object stub (src/rpc)";
  if (mod.startsWith("src/model/")) return "validation + tuple keys (src/model)";
  if (mod.startsWith("src/objects/")) return "Durable Object methods, JS (src/objects)";
  return `other JS (${mod})`;
}

/**
 * Self time per area. A sample is charged to its innermost frame in the
 * bundle; a native callee (url "") is charged to that frame's area, except
 * SQLite cursor/exec calls from Durable Object code, charged to SQL.
 */
export function attribute(profile, bundleSource, bundleName = "index.js") {
  const moduleOf = moduleIndex(bundleSource);
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const counts = new Map();
  const cache = new Map();
  const areaOfNode = (id) => {
    if (cache.has(id)) return cache.get(id);
    const leaf = nodes.get(id);
    const fn = leaf.callFrame.functionName;
    let area;
    if (fn === "(idle)") area = "(idle: isolate waiting)";
    else if (fn === "(garbage collector)") area = "V8 garbage collection";
    else if (fn === "(program)") area = "(program: native runtime outside JS: HTTP, I/O, RPC plumbing)";
    else {
      // Innermost frame that is in the bundle.
      let cur = id;
      const nativeLeaf = leaf.callFrame.url === "" ? fn : undefined;
      while (cur !== undefined && !nodes.get(cur).callFrame.url.endsWith(bundleName)) cur = parent.get(cur);
      if (cur === undefined) area = "native runtime called outside the bundle";
      else {
        const mod = moduleOf(nodes.get(cur).callFrame.lineNumber);
        area = areaOfModule(mod);
        if (nativeLeaf && SQL_NATIVE.has(nativeLeaf) && mod.startsWith("src/objects/")) area = "SQL (SqlStorage exec + cursor, native)";
      }
    }
    cache.set(id, area);
    return area;
  };
  for (const s of profile.samples) {
    const a = areaOfNode(s);
    counts.set(a, (counts.get(a) ?? 0) + 1);
  }
  const total = profile.samples.length;
  const idle = counts.get("(idle: isolate waiting)") ?? 0;
  const busy = total - idle;
  return {
    samples: total,
    busyShare: +(busy / total).toFixed(3),
    areas: [...counts]
      .filter(([a]) => a !== "(idle: isolate waiting)")
      .map(([area, n]) => ({ area, share: +(n / busy).toFixed(4) }))
      .sort((a, b) => b.share - a.share),
  };
}

/**
 * Top functions by self time, or with `inclusive` by time in them or anything
 * they called (each function counted once per sample, however deep it recurs),
 * for the report's detail.
 */
export function topFunctions(profile, bundleSource, limit = 15, { inclusive = false } = {}) {
  const moduleOf = moduleIndex(bundleSource);
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (f) => `${f.functionName || "(anonymous)"} [${f.url ? moduleOf(f.lineNumber) : "native"}]`;
  const counts = new Map();
  let busy = 0;
  for (const s of profile.samples) {
    if (nodes.get(s).callFrame.functionName === "(idle)") continue;
    busy++;
    const seen = new Set();
    for (let id = s; id !== undefined; id = inclusive ? parent.get(id) : undefined) {
      const f = nodes.get(id).callFrame;
      if (f.functionName === "(root)") continue;
      const k = keyOf(f);
      if (seen.has(k)) continue;
      seen.add(k);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([fn, n]) => ({ fn, share: +(n / busy).toFixed(4) }));
}

// ---- perf (native) ------------------------------------------------------------

export function perfAvailable() {
  try {
    execFileSync("perf", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const PERF_RULES = [
  [/sqlite3|Sqlite|SqlStorage/i, "SQLite"],
  [/\[k\]/, "kernel (syscalls, TCP, scheduling)"],
  [/EVP_|HMAC|SHA256|sha256|bssl|BN_|CRYPTO_|SubtleCrypto/, "crypto (HMAC/SHA)"],
  [
    /Scavenger|MarkCompact|Sweep|cppgc|HeapTracer|GlobalHandles|ConcurrentMarking|Marking|TracedHandles|Evacuat|v8::internal::Heap/,
    "V8 GC + handle tracing",
  ],
  [/tcmalloc|TCMalloc|malloc|\bfree\b|memmove|memset|memcpy|memcmp|Disposer/, "memory allocation/copies"],
  [/\[JIT\]|Builtins_|Interpreter|Baseline|Maglev|compiler::/, "JS execution (JIT code, builtins)"],
  [/Json|JSON/, "V8 JSON"],
  [
    /workerd::api::(Headers|Request|Response|Body|\w*Stream|URL|Url)|HttpHeaders|getHeaderKeyFor/,
    "runtime HTTP objects (Request/Headers/streams)",
  ],
  [/Actor|actor|DurableObject|Rpc|rpc|capnp/, "Durable Object / RPC plumbing"],
  [/kj::.*[Hh]ttp|HttpService|HttpServer/, "kj HTTP server"],
  [/workerd::jsg|v8::/, "V8 runtime + bindings glue"],
  [/kj::|Promise|Event/, "kj async/event loop"],
];

/** Records `pid` with perf while `during()` runs; returns native time by subsystem. */
export async function perfProfile({ pid, during, hz = 499 }) {
  const file = join(process.env.TMPDIR ?? "/tmp", `moq-worker-bench-perf-${process.pid}.data`);
  const rec = spawn("perf", ["record", "-F", String(hz), "-g", "-o", file, "-p", String(pid)], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  rec.stderr.on("data", (d) => (err += d));
  await new Promise((r) => setTimeout(r, 300));
  let result;
  try {
    result = await during();
  } finally {
    rec.kill("SIGINT");
    await new Promise((r) => rec.once("exit", r));
  }
  let out;
  try {
    out = execFileSync(
      "perf",
      ["report", "-i", file, "--stdio", "--no-children", "--sort", "dso,sym", "-g", "none", "--percent-limit", "0"],
      {
        encoding: "utf8",
        maxBuffer: 1 << 28,
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
  } catch (e) {
    throw new Error(`perf report failed: ${e.message}\n${err}`);
  } finally {
    try {
      execFileSync("rm", ["-f", file]);
    } catch {}
  }
  const cats = new Map();
  let samples = 0;
  const sm = /Samples: (\d+)/.exec(out);
  if (sm) samples = Number(sm[1]);
  for (const line of out.split("\n")) {
    const m = /^\s+([\d.]+)%\s+(.*)$/.exec(line);
    if (!m) continue;
    const cat = PERF_RULES.find(([re]) => re.test(m[2]))?.[1] ?? "other workerd/libc";
    cats.set(cat, (cats.get(cat) ?? 0) + Number(m[1]) / 100);
  }
  return {
    result,
    samples,
    areas: [...cats].map(([area, share]) => ({ area, share: +share.toFixed(4) })).sort((a, b) => b.share - a.share),
  };
}

export function readBundle(bundle) {
  return readFileSync(join(bundle.dir, "index.js"), "utf8");
}
