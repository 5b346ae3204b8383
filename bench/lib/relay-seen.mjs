// Routing as the relay sees it (issue 12): the edge's lookup cache against
// moq-relay-ietf's ApiCoordinator path (moq-api + Redis), measured by the Rust
// example edge/examples/relay_seen.rs, which calls Coordinator::lookup_track
// in-process exactly as the relay does. Also the propagation time of a move
// and the Worker calls per 1,000 viewer joins. Each run prints one JSON line.
import { execFileSync } from "node:child_process";
import { homedir } from "node:os";
import { join } from "node:path";
import { DEV_ADMIN_TOKEN, ROOT } from "../../test/e2e/lib/worker.mjs";

/**
 * Builds the example and returns its path. Full runs: release, in the bench's
 * own target dir (the first build takes many minutes). --quick: a debug build
 * in the edge tests' target dir (incremental after `npm run test:edge`), so the
 * CI smoke run stays short; its numbers are only a smoke check.
 */
export function buildRelaySeen(log, quick) {
  const release = !quick;
  const target = release
    ? (process.env.MOQ_BENCH_CARGO_TARGET ?? join(homedir(), ".cache/moq-worker/bench-target"))
    : (process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/moq-worker/target"));
  log(`building edge/examples/relay_seen.rs (${release ? "release" : "debug"}, ${target})`);
  execFileSync("cargo", ["build", ...(release ? ["--release"] : []), "--quiet", "--example", "relay_seen"], {
    cwd: join(ROOT, "edge"),
    env: { ...process.env, CARGO_TARGET_DIR: target },
    stdio: ["ignore", "inherit", "inherit"],
  });
  return join(target, release ? "release" : "debug", "examples/relay_seen");
}

function run(bin, url, args) {
  const out = execFileSync(bin, ["--url", url, ...args], {
    encoding: "utf8",
    env: { ...process.env, MOQ_ADMIN_TOKEN: DEV_ADMIN_TOKEN, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 600_000,
  });
  return JSON.parse(out.trim().split("\n").pop());
}

/**
 * results.relaySeen: rows per system (opsPerSec, p50Ms, p99Ms), ratio =
 * cached WorkerCoordinator ops/s ÷ ApiCoordinator ops/s, p50Ratio, the
 * propagation p50/p99 and Worker calls per 1,000 joins.
 */
export async function relaySeen({ results, quick, log, worker, moqApi }) {
  const bin = buildRelaySeen(log, quick);
  const seconds = quick ? 1.5 : 8;
  const common = ["--tracks", "100", "--concurrency", "16", "--seconds", String(seconds)];
  log(`relay-seen lookup: cached WorkerCoordinator (${worker.kind ?? "Worker"})`);
  const cached = run(bin, worker.url, ["lookup", "--system", "worker", ...common]);
  log("relay-seen lookup: ApiCoordinator's moq-api client against moq-api + Redis");
  const api = run(bin, moqApi.url, ["lookup", "--system", "moq-api", ...common]);
  const trials = quick ? 20 : 200;
  log(`propagation: ${trials} moves A → C, until B's cached lookup answers C`);
  const propagation = run(bin, worker.url, ["propagation", "--trials", String(trials)]);
  log("Worker calls per 1,000 viewer joins of one pulled track");
  const joins = run(bin, worker.url, ["joins", "--joins", "1000"]);
  // Merged: the fan-out rows (bench/fan-out.mjs) live in the same object.
  results.relaySeen = {
    ...results.relaySeen,
    rows: [
      { ...cached, system: "moq-worker edge, cached WorkerCoordinator" },
      { ...api, system: "moq-relay-ietf ApiCoordinator → moq-api + Redis" },
    ],
    ratio: cached.opsPerSec / api.opsPerSec,
    p50Ratio: cached.p50Ms / api.p50Ms,
    propagation,
    joins,
    method:
      `edge/examples/relay_seen.rs (${quick ? "debug build: smoke numbers only" : "release"}): ` +
      "Coordinator::lookup_track in-process over 100 hot tracks, 16 tasks closed loop; " +
      "propagation = C's RegisterNamespace returned → B's lookup answers C; joins = resolve_scope + get_scope_config + lookup_track per join, Worker calls from its /metrics",
  };
  log(
    `relay-seen: cached ${cached.opsPerSec.toFixed(0)} ops/s p50 ${cached.p50Ms.toFixed(4)} ms vs moq-api ${api.opsPerSec.toFixed(0)} ops/s p50 ${api.p50Ms.toFixed(3)} ms (${results.relaySeen.ratio.toFixed(1)}×); ` +
      `propagation p50 ${propagation.p50Ms.toFixed(1)} ms p99 ${propagation.p99Ms.toFixed(1)} ms; ${joins.per1000} Worker calls / 1,000 joins`,
  );
}
