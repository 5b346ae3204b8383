// LeaseClockObject: one timer for many relays' lease sockets. A relay on its
// lease socket is alive while the runtime answers its pings; someone must look
// when it would have been silent for a TTL. With an alarm of its own, each
// RelayObject pays an alarm and a setAlarm every TTL, most of the bill of a
// steady relay. Instead it asks its clock (one of LEASE_CLOCKS) to call
// RelayObject.checkLease then. At each of its alarms a clock checks every
// relay due within half a TTL, which lines their next checks up: it fires
// about once per TTL however many relays it watches, and a relay that went
// silent is checked at its deadline. Deadlines are kept in memory and the
// members in SQLite (written when one joins or leaves); a clock that starts
// anew checks every member at its next alarm.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";
import { leaseSettings } from "../lease.js";
import { armAlarm, countAlarm, meteredSql } from "../metrics/billing.js";
import { bucketOf } from "../model/hash.js";
import { integerSetting } from "../settings.js";
import { bounded, OBJECT_CALL_TIMEOUT_MS } from "./bounded.js";
import { LEASE_CLOCK_MIGRATIONS, LEASE_CLOCK_SQL } from "./lease-clock-sql.js";
import { migrate } from "./migrations.js";
import { relayStub } from "./stubs.js";

/** Checks one alarm makes at most; the rest follow at once in the next. */
const MAX_CHECKS_PER_ALARM = 1000;
/** A check that failed (the relay's object unreachable) is tried again this soon. */
const RETRY_MS = 1000;

/** The clock (its object name) of a relay. */
export function leaseClockOf(env: Env, relay: string): string {
  return `clock-${bucketOf(relay, integerSetting(env, "LEASE_CLOCKS"))}`;
}

export class LeaseClockObject extends DurableObject<Env> {
  private sql: SqlStorage;
  /** When each watched relay is to be checked; 0: at the next alarm. */
  private deadlines = new Map<string, number>();
  /** The alarm as last set or read; undefined = not read yet. */
  private alarmAt: number | null | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = meteredSql(ctx.storage.sql);
    migrate(ctx.storage, LEASE_CLOCK_MIGRATIONS);
    for (const row of this.sql.exec(LEASE_CLOCK_SQL.all).toArray()) this.deadlines.set(row.url as string, 0);
  }

  /** Check the relay at `at` (and from then on as its checks say). */
  async watch(url: string, at: number): Promise<void> {
    if (!this.deadlines.has(url)) this.sql.exec(LEASE_CLOCK_SQL.add, url);
    this.deadlines.set(url, at);
    await this.armBy(at);
  }

  /** How many relays this clock watches. */
  watching(): number {
    return this.deadlines.size;
  }

  async alarm(): Promise<void> {
    countAlarm();
    this.alarmAt = null;
    const horizon = Date.now() + Math.floor(leaseSettings(this.env).leaseTtlMs / 2);
    const due = [...this.deadlines]
      .filter(([, at]) => at <= horizon)
      .sort((a, b) => a[1] - b[1])
      .slice(0, MAX_CHECKS_PER_ALARM);
    await Promise.all(due.map(([url, at]) => this.check(url, at)));
    let next = Number.POSITIVE_INFINITY;
    for (const at of this.deadlines.values()) next = Math.min(next, at);
    if (next !== Number.POSITIVE_INFINITY) await this.armBy(next);
  }

  /** One relay's check: its next deadline, or it leaves (its own alarm took over, or the lease ended). */
  private async check(url: string, asked: number): Promise<void> {
    try {
      const next = await bounded(relayStub(this.env, url).checkLease(), OBJECT_CALL_TIMEOUT_MS, `relay ${url}`);
      // A watch() meanwhile (the relay handed over again) owns the deadline.
      if (this.deadlines.get(url) !== asked) return;
      if (next === null) {
        this.deadlines.delete(url);
        this.sql.exec(LEASE_CLOCK_SQL.remove, url);
      } else {
        this.deadlines.set(url, next);
      }
    } catch (err) {
      console.warn(`lease clock: relay ${url} not checked, again in ${RETRY_MS} ms: ${String(err)}`);
      if (this.deadlines.get(url) === asked) this.deadlines.set(url, Date.now() + RETRY_MS);
    }
  }

  /** The alarm at `at` or earlier. */
  private async armBy(at: number): Promise<void> {
    if (this.alarmAt === undefined) this.alarmAt = await this.ctx.storage.getAlarm();
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    await armAlarm(this.ctx.storage, at);
    this.alarmAt = at;
  }
}
