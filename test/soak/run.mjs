#!/usr/bin/env node
// Soak and chaos run against a real `wrangler dev` (npm run soak; docs/reliability.md).
//
// 50+ simulated relays (relays.mjs) beat and make a realistic mix of calls for
// the whole run while faults are injected (faults.mjs): wrangler dev SIGKILLed
// and restarted on the same state, frozen with SIGSTOP for longer than the
// lease, requests cut mid-flight, relays restarting with a new epoch, leaving
// with Shutdown, or going silent. Every call is recorded (history.mjs) and
// checked, with the state at every checkpoint, against a model of the rules
// (checker.mjs). Prints what was done, injected and found; exits 1 on any
// violation.
//
// Options: --quick (about a minute, run by npm test), --minutes=N (default 30),
// --relays=N (default 60), --seed=N, --out=FILE (the history as JSON lines),
// --log (wrangler's output).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { nsText, ns, registeredUrl, relayToken } from "../e2e/lib/rpc.mjs";
import { DEV_ADMIN_TOKEN, freePort } from "../e2e/lib/worker.mjs";
import { Checker, iso } from "./checker.mjs";
import { Runtime } from "./faults.mjs";
import { History, recordedCall } from "./history.mjs";
import { SimRelay } from "./relays.mjs";
import { report } from "./report.mjs";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    minutes: { type: "string", default: "30" },
    relays: { type: "string", default: "50" },
    seed: { type: "string", default: String(Date.now() % 1e9) },
    out: { type: "string" },
    log: { type: "boolean", default: false },
  },
});

const QUICK = args.quick;
const DURATION_MS = QUICK ? 60_000 : Number(args.minutes) * 60_000;
const RELAYS = QUICK ? 30 : Number(args.relays);
const SEED = Number(args.seed);
/**
 * The lease (beats every TTL/3): the default 10 s for the full run; shorter for
 * --quick so that a freeze past the lease fits in a minute.
 */
const TTL = QUICK ? 6000 : 10_000;
/** docs/lifetimes.md: the purge comes at the lease expiry, at worst one more TTL (object evicted before its alarm). */
const PURGE_BOUND = TTL;
/**
 * After a lease socket's close the lease ends CLOSE_GRACE_MS later, an alarm on
 * record that no eviction delays: the purge needs only that alarm's own time.
 * Less than a lease, so that a Worker waiting for the lease's end would show.
 */
const CLOSE_PURGE_BOUND = TTL / 2;
const SCOPES = ["soak-a", "soak-b", "soak-c", "soak-d"];
/** Mean time between one relay's calls (heartbeats aside). */
const OP_EVERY_MS = QUICK ? 5000 : 8000;
const CUT_PROBABILITY = 0.02;
const FREEZE_MS = TTL + 2000;
/** The share of relays that hold their lease on the lease socket, as the edge does (the others beat over HTTP). */
const SOCKET_SHARE = 0.5;
/**
 * Fault schedule: first runtime reset and freeze, then each again every period.
 * A reset is the runtime SIGKILLed and restarted: every lease socket breaks at once.
 * Besides, one socket relay's connection breaks every lifecycle period (it reconnects).
 */
const SCHEDULE = QUICK
  ? { reset: [12_000], freeze: [32_000], checkpointEvery: 20_000, lifecycleEvery: 3_000 }
  : { reset: every(120_000, 300_000), freeze: every(270_000, 300_000), checkpointEvery: 60_000, lifecycleEvery: 5_000 };

function every(first, period) {
  const out = [];
  for (let t = first; t < DURATION_MS - 60_000; t += period) out.push(t);
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mulberry32(a) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function main() {
  const rng = mulberry32(SEED);
  const state = mkdtempSync(join(tmpdir(), "moq-worker-soak-"));
  const runtime = new Runtime({ port: await freePort(), state, vars: { LEASE_TTL_MS: String(TTL) }, log: args.log });
  const history = new History(args.out);
  const checker = new Checker({ runtime, ttl: TTL, purgeBound: PURGE_BOUND, closePurgeBound: CLOSE_PURGE_BOUND });
  let paused;
  const ctx = {
    runtime,
    history,
    checker,
    rng,
    scopes: SCOPES,
    ttl: TTL,
    opEveryMs: OP_EVERY_MS,
    cut: () => (rng() < CUT_PROBABILITY ? Math.floor(rng() * 15) : undefined),
    gate: () => paused?.promise ?? Promise.resolve(),
  };
  const relays = [];
  const lifecycle = { restart: 0, shutdown: 0, silent: 0, socketDrop: 0 };
  const purges = [];
  const recoveries = [];
  const resets = [];
  const watchers = [];
  const pending = [];
  let made = 0;
  let failed;

  // Tokens for every relay the run may start, minted before the load begins.
  const tokens = [];
  const newRelay = async () => {
    const r = new SimRelay(ctx, `r${made++}`, { socket: rng() < SOCKET_SHARE });
    await r.start(tokens.shift() ?? (await relayToken(runtime.url, r.url)));
    relays.push(r);
    return r;
  };
  const live = () => relays.filter((r) => r.running);

  /** Polls a silent relay's sentinel namespace until no answer names it: the purge delay. */
  const watchPurge = async (r, k, observer) => {
    for (;;) {
      const op = await recordedCall(history, {
        url: runtime.url,
        method: "Lookup",
        body: { scope: k.scope, namespace: ns(k.key) },
        token: observer,
        relay: "observer",
        timeoutMs: 3000,
      });
      op.scope = k.scope;
      if (op.outcome === "ok") checker.lookup(op, k.scope, k.key, undefined, []);
      const gone =
        (op.outcome === "ok" && registeredUrl(op.answer.origin?.relay?.url) !== r.url) ||
        (op.outcome === "error" && op.code === "not_found");
      if (gone) {
        // From the last heartbeat it sent (answered or lost), as lifetimes.md measures; on the socket, from its close.
        const since = Math.max(r.model.lastBeatSent ?? 0, r.model.lastSocketClose ?? 0);
        purges.push({
          relay: r.url,
          socket: r.socket,
          delay: op.end - since,
          upDelay: op.end - since - runtime.unavailableMs(since, op.end),
        });
        return;
      }
      if (Date.now() - r.model.deadFrom > 120_000)
        return checker.violation("late-purge", `${r.url}'s ${k.id} still answered 120 s after it went silent`);
      await sleep(500);
    }
  };

  const lifecycleEvent = async (observer) => {
    const candidates = live().filter((r) => !r.changing);
    if (candidates.length === 0) return;
    const r = candidates[Math.floor(rng() * candidates.length)];
    r.changing = true;
    const x = rng();
    if (x < 0.5) {
      lifecycle.restart++;
      await r.restart();
      r.changing = false;
    } else if (x < 0.75) {
      lifecycle.shutdown++;
      if (!(await r.shutdown())) console.error(`${r.url}: Shutdown not acknowledged within 120 s; counted as gone silent`);
      await newRelay();
    } else {
      lifecycle.silent++;
      await r.silence();
      const k = r.model.keys.size ? [...r.model.keys.values()].find((kk) => kk.kind === "ns" && kk.st === "present") : undefined;
      if (k) watchers.push(watchPurge(r, k, observer));
      await newRelay();
    }
  };

  /** Pauses relay calls, reads every scope, compares with the model. */
  const checkpoint = async (label) => {
    let resume;
    paused = { promise: new Promise((r) => (resume = r)) };
    await Promise.all(relays.map((r) => r.idle(() => console.error(`checkpoint waits on ${r.describe()}`))));
    const from = Date.now();
    const rows = await snapshot(runtime, history);
    const to = Date.now();
    const before = checker.violations.length;
    checker.checkpoint(rows, from, to);
    paused = undefined;
    resume();
    console.log(`[${iso(Date.now())}] checkpoint ${label}: ${rows.length} rows, ${checker.violations.length - before} violations`);
  };

  /** Time from `t` until every live relay beats again with nothing left to re-register. */
  const recovery = async (fault, t) => {
    const deadline = Date.now() + 60_000;
    while (!live().every((r) => r.whole(t))) {
      if (Date.now() > deadline) {
        // Slow, not wrong: the rules are checked by the checkpoints; this is reported as a recovery time.
        const stuck = live().filter((r) => !r.whole(t));
        recoveries.push({ fault, ms: Date.now() - t, stuck: stuck.length });
        console.error(`${stuck.length} relays not recovered within 60 s of the ${fault}, e.g. ${stuck[0].describe()}`);
        return;
      }
      await sleep(50);
    }
    recoveries.push({ fault, ms: Date.now() - t });
    console.log(`[${iso(Date.now())}] ${fault}: every relay whole again ${Date.now() - t} ms after the runtime was back`);
  };

  /**
   * After a reset at `from` (healthy again at `to`): when every live socket relay
   * holds its lease on a socket opened since, how many sockets broke, and how much
   * of the restart grace (a TTL from the new workerd's start) was left.
   */
  const backOnSockets = async (from, to, closesBefore) => {
    const grace = runtime.lives.at(-1).start + TTL;
    const deadline = to + 60_000;
    const backAt = new Map();
    let waiting = [];
    for (;;) {
      for (const r of live()) if (r.socket && !backAt.has(r) && r.onSocketSince(from)) backAt.set(r, r.socketUpAt);
      waiting = live().filter((r) => r.socket && !backAt.has(r));
      if (waiting.length === 0 || Date.now() > deadline) break;
      await sleep(20);
    }
    const lastBack = Math.max(to, ...backAt.values());
    const reset = {
      socketRelays: backAt.size + waiting.length,
      closed: checker.counts.resetCloses - closesBefore,
      backMs: lastBack - to,
      graceLeftMs: grace - lastBack,
      stuck: waiting.length,
    };
    console.log(
      `[${iso(Date.now())}] runtime reset: ${reset.closed} sockets broke; ${reset.stuck ? `${reset.stuck} of ${reset.socketRelays} socket relays not back within 60 s` : `all ${reset.socketRelays} socket relays back on a socket ${reset.backMs} ms after the runtime answered, ${reset.graceLeftMs} ms before the restart grace ended`}`,
    );
    return reset;
  };

  const started = Date.now();
  for (const sig of ["SIGINT", "SIGTERM"]) {
    process.once(sig, async () => {
      await runtime.stop();
      rmSync(state, { recursive: true, force: true });
      process.exit(130);
    });
  }
  try {
    await runtime.start();
    console.log(`soak: wrangler dev on ${runtime.url}, LEASE_TTL_MS=${TTL}, ${RELAYS} relays, seed ${SEED}, ${DURATION_MS / 1000} s`);
    const observer = await relayToken(runtime.url, "https://observer.soak.test:4443/");
    const needed = RELAYS + Math.ceil(DURATION_MS / SCHEDULE.lifecycleEvery / 2) + 10;
    for (let i = 0; i < needed; i += 10) {
      const batch = Array.from({ length: Math.min(10, needed - i) }, (_, j) =>
        relayToken(runtime.url, `https://r${i + j}.soak.test:4443/`),
      );
      tokens.push(...(await Promise.all(batch)));
    }
    for (let i = 0; i < RELAYS; i++) await newRelay();
    console.log(`[${iso(Date.now())}] ${RELAYS} relays started`);
    const t0 = Date.now();
    const at = (ms) => t0 + ms;
    const events = [
      ...SCHEDULE.reset.map((t) => ({ t: at(t), kind: "reset" })),
      ...SCHEDULE.freeze.map((t) => ({ t: at(t), kind: "freeze" })),
    ];
    for (let t = SCHEDULE.checkpointEvery; t < DURATION_MS; t += SCHEDULE.checkpointEvery) events.push({ t: at(t), kind: "checkpoint" });
    for (let t = SCHEDULE.lifecycleEvery; t < DURATION_MS - 10_000; t += SCHEDULE.lifecycleEvery) {
      events.push({ t: at(t), kind: "lifecycle" });
      events.push({ t: at(t + SCHEDULE.lifecycleEvery / 2), kind: "drop" });
    }
    events.sort((a, b) => a.t - b.t);
    for (const e of events) {
      await sleep(Math.max(0, e.t - Date.now()));
      const failedRelay = relays.find((r) => r.failure);
      if (failedRelay) throw failedRelay.failure;
      if (process.env.SOAK_DEBUG) console.log(`[${iso(Date.now())}] ${e.kind}`);
      if (e.kind === "lifecycle") pending.push(lifecycleEvent(observer));
      else if (e.kind === "drop") {
        const up = live().filter((r) => r.socket && r.lease && !r.changing);
        if (up.length && up[Math.floor(rng() * up.length)].dropSocket()) lifecycle.socketDrop++;
      } else if (e.kind === "checkpoint") await checkpoint(`at ${Math.round((Date.now() - t0) / 1000)} s`);
      else if (e.kind === "reset") {
        const held = live().filter((r) => r.socket && r.lease);
        const closesBefore = checker.counts.resetCloses;
        const { from, to } = await runtime.killAndRestart();
        console.log(
          `[${iso(Date.now())}] runtime reset: wrangler dev SIGKILLed with ${held.length} relays on the lease socket, restarted on the same state (down ${to - from} ms)`,
        );
        checker.resumed(to);
        const back = backOnSockets(from, to, closesBefore);
        await recovery("reset", to);
        resets.push(await back);
        await checkpoint("after the reset");
      } else if (e.kind === "freeze") {
        const { from, to } = await runtime.freeze(FREEZE_MS);
        console.log(`[${iso(Date.now())}] wrangler dev frozen (SIGSTOP) for ${to - from} ms, lease ${TTL} ms`);
        checker.resumed(to);
        await recovery("freeze", to);
        await checkpoint("after the freeze");
      }
    }
    await Promise.all(pending);
    await sleep(Math.max(0, t0 + DURATION_MS - Date.now()));
    await checkpoint("at the end");
    // Every live relay leaves; once every dead relay's deadline has passed, every scope must be empty.
    await Promise.all(live().map((r) => r.shutdown()));
    await Promise.all(watchers);
    const last = Math.max(Date.now(), ...relays.map((r) => checker.deadline(r.model)));
    await sleep(Math.max(0, last - Date.now()) + 200);
    await checkpoint("after every relay left");
    const rows = await snapshot(runtime, history);
    if (rows.length)
      checker.violation(
        "late-purge",
        `${rows.length} rows left after every relay left or died (first: ${rows[0].scope} ${rows[0].key} of ${rows[0].relay})`,
      );
  } catch (e) {
    failed = e;
  } finally {
    await Promise.allSettled(relays.map((r) => r.stop()));
    await runtime.stop();
    await history.close();
    rmSync(state, { recursive: true, force: true });
  }
  console.log(
    report({
      mode: QUICK ? "quick" : "full",
      seconds: (Date.now() - started) / 1000,
      relaysStarted: made,
      history,
      runtime,
      checker,
      lifecycle,
      purges,
      recoveries,
      resets,
      socketRelays: relays.filter((r) => r.socket).length,
    }),
  );
  if (failed) throw failed;
  if (checker.violations.length > 0) process.exit(1);
  console.log("soak: ok");
}

/** Every row of every soak scope, through DescribeScope (retried while the runtime is down). */
async function snapshot(runtime, history) {
  const rows = [];
  for (const scope of SCOPES) {
    let pageToken = "";
    do {
      const op = await recordedCall(history, {
        url: runtime.url,
        service: "AdminService",
        method: "DescribeScope",
        body: { scope, pageSize: 1000, pageToken },
        token: DEV_ADMIN_TOKEN,
        relay: "admin",
        timeoutMs: 10_000,
      });
      if (op.outcome === "error" && op.code === "not_found") break;
      if (op.outcome !== "ok") {
        await sleep(200);
        continue;
      }
      const d = op.answer;
      for (const n of d.namespaces ?? []) rows.push({ scope, kind: "ns", key: nsText(n.namespace), relay: registeredUrl(n.relay.url) });
      for (const t of d.tracks ?? [])
        rows.push({ scope, kind: "track", key: `${nsText(t.namespace)}#${t.name}`, relay: registeredUrl(t.relay.url) });
      for (const s of d.namespaceSubscriptions ?? [])
        rows.push({ scope, kind: "nssub", key: nsText(s.prefix), relay: registeredUrl(s.relay.url) });
      for (const s of d.trackSubscriptions ?? [])
        rows.push({ scope, kind: "tracksub", key: `${nsText(s.namespace)}#${s.track}`, relay: registeredUrl(s.relay.url) });
      pageToken = d.nextPageToken ?? "";
    } while (pageToken);
  }
  return rows;
}

main().catch((e) => {
  console.error(`soak: ${e.stack ?? e}`);
  process.exit(1);
});
