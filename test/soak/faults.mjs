// The Worker under test and the faults done to it: `wrangler dev` killed
// (SIGKILL, whole process group) and restarted on the same state, frozen
// (SIGSTOP) and resumed (SIGCONT). Keeps the timeline the checker needs:
// when each runtime process started and ended, and when it was frozen.
import { readFileSync } from "node:fs";
import { commOf, startWorker } from "../e2e/lib/worker.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Wall-clock ms when a process started (from /proc, 10 ms ticks), rounded down; undefined if unknown. */
function processStartMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))[1]);
    return btime * 1000 + ticks * 10 - 10;
  } catch {
    return undefined;
  }
}

export class Runtime {
  constructor({ port, state, vars, log }) {
    Object.assign(this, { port, state, vars, log });
    /** Runtime lives: { start, end } (start: earliest possible start of any Durable Object in it). */
    this.lives = [];
    /** Freezes: { from, to }; downtimes: { from, to } (killed until healthy again). */
    this.freezes = [];
    this.downs = [];
    this.faults = { kill: 0, freeze: 0 };
    this.frozen = false;
    this.recoveries = [];
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    const spawned = Date.now();
    // Kept so that stop() during a restart stops the runtime being started too.
    this.starting = startWorker({ port: this.port, persistTo: this.state, vars: this.vars, log: this.log });
    this.worker = await this.starting;
    this.starting = undefined;
    // Objects start inside workerd, so its process start bounds their start from below.
    const workerd = this.worker.pids().find((p) => commOf(p) === "workerd");
    const start = (workerd && processStartMs(workerd)) ?? spawned;
    this.lives.push({ start: Math.max(start, spawned - 10), end: Number.POSITIVE_INFINITY });
    return Date.now();
  }

  /** SIGKILL the whole process group, then start again on the same state; resolves when healthy. */
  async killAndRestart(downMs = 0) {
    this.faults.kill++;
    const from = Date.now();
    this.killedSince = from;
    await this.worker.stop("SIGKILL");
    this.lives.at(-1).end = Date.now();
    if (downMs) await sleep(downMs);
    const to = await this.start();
    this.downs.push({ from, to });
    this.killedSince = undefined;
    return { from, to };
  }

  /** Killed (and not yet healthy again) at time t. */
  killedAt(t) {
    return this.downs.some((w) => w.from <= t && t <= w.to) || (this.killedSince !== undefined && t >= this.killedSince);
  }

  /** SIGSTOP every process of the runtime for `ms`, then SIGCONT. */
  async freeze(ms) {
    this.faults.freeze++;
    const pids = this.worker.pids();
    const from = Date.now();
    this.frozen = true;
    this.frozenSince = from;
    for (const p of pids) signal(p, "SIGSTOP");
    await sleep(ms);
    for (const p of pids) signal(p, "SIGCONT");
    this.frozen = false;
    const to = Date.now();
    this.freezes.push({ from, to });
    return { from, to };
  }

  /** Unavailable (killed or frozen) at time t, or during [a, b]. */
  unavailable(a, b = a) {
    return [...this.downs, ...this.freezes].some((w) => w.from <= b && a <= w.to) || (this.frozen && b >= this.frozenSince);
  }

  /** ms of [a, b] the runtime was killed or frozen. */
  unavailableMs(a, b) {
    let t = 0;
    for (const w of [...this.downs, ...this.freezes]) t += Math.max(0, Math.min(b, w.to) - Math.max(a, w.from));
    return t;
  }

  /**
   * Could a lease renewed no later than `from` have lapsed (its alarm run)
   * before `to`? A RelayObject purges only at an alarm with the lease expired,
   * and never before it has been up one TTL (restart grace), so inside each
   * runtime life the lapse needs `ttl` past both `from` and the life's start.
   */
  couldLapse(from, to, ttl) {
    return this.lives.some((life, i) => {
      const start = i === 0 ? Number.NEGATIVE_INFINITY : life.start;
      return Math.min(to, life.end) > Math.max(from, start) + ttl;
    });
  }

  /** Some runtime life was running after `from` and before `to` (an alarm due at `from` could run). */
  ranBetween(from, to) {
    return this.lives.some((life) => Math.min(to, life.end) > Math.max(from, life.start));
  }

  async stop() {
    const starting = this.starting?.catch(() => undefined);
    await this.worker?.stop();
    await (await starting)?.stop();
  }
}

function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {}
}
