// The Worker's signing keys of one scope, inside its ScopeObject (table
// signing_keys, scope-sql.ts): which are in the policy, which one signs, and
// when a replaced one leaves. Times are Unix ms; a key's life:
//   added ── signs_from ── (replaced_at: a newer key signs) ── retired at
//   max(max_exp, replaced_at) + clock skew, when no token it signed is valid.
import type { PolicyKey } from "../model/auth-policy.js";
import { SCOPE_SQL } from "./scope-sql.js";

interface KeyRow {
  kid: string;
  pem: string;
  createdAt: number;
  signsFrom: number;
  replacedAt: number | null;
  maxExp: number;
}

export class ScopeKeys {
  constructor(private sql: SqlStorage) {}

  private rows(): KeyRow[] {
    return this.sql
      .exec(SCOPE_SQL.signingKeys)
      .toArray()
      .map((r) => ({
        kid: r.kid as string,
        pem: r.pem as string,
        createdAt: r.created_at as number,
        signsFrom: r.signs_from as number,
        replacedAt: r.replaced_at as number | null,
        maxExp: (r.max_exp as number) * 1000,
      }));
  }

  private static retiresAt(k: KeyRow, skewMs: number): number | undefined {
    return k.replacedAt === null ? undefined : Math.max(k.maxExp, k.replacedAt) + skewMs;
  }

  /** The keys in the policy at `now`, newest first, with which one signs. */
  inPolicy(now: number, skewMs: number): PolicyKey[] {
    const live = this.rows().filter((k) => (ScopeKeys.retiresAt(k, skewMs) ?? Number.POSITIVE_INFINITY) > now);
    // The rule of signingKeyCurrent (scope-sql.ts), which picks the key signWith uses.
    const signer = live
      .filter((k) => k.signsFrom <= now && (k.replacedAt === null || k.replacedAt > now))
      .sort((a, b) => b.signsFrom - a.signsFrom || b.createdAt - a.createdAt)[0]?.kid;
    return live.map((k) => ({
      kid: k.kid,
      pem: k.pem,
      addedAtMs: k.createdAt,
      worker: { signing: k.kid === signer, retiresAtMs: ScopeKeys.retiresAt(k, skewMs) },
    }));
  }

  /** Kids of the keys in the policy that are not being retired (no newer key replaced them). */
  active(): string[] {
    return this.rows()
      .filter((k) => k.replacedAt === null)
      .map((k) => k.kid);
  }

  /** Forgets every key (the policy was turned off: a later one starts afresh). */
  clear(): void {
    this.sql.exec(SCOPE_SQL.signingKeysClear);
  }

  /**
   * Stores a new key that signs from `signsFrom`; every key signing before
   * it is replaced from then on. Returns the key it replaces, if one signed.
   */
  add(key: { kid: string; pem: string; sealed: Uint8Array }, now: number, signsFrom: number): string | undefined {
    const replaces = this.rows().find((k) => k.replacedAt === null)?.kid;
    this.sql.exec(SCOPE_SQL.signingKeyPut, key.kid, key.pem, key.sealed, now, signsFrom);
    this.sql.exec(SCOPE_SQL.signingKeysReplace, signsFrom, key.kid);
    return replaces;
  }

  /**
   * The key to sign a token expiring at `expSeconds` with, recording that
   * expiry; else when the first key starts signing (null: no key at all).
   */
  signWith(now: number, expSeconds: number): { kid: string; sealed: Uint8Array } | { kid: string; signsFrom: number } | null {
    const row = this.sql.exec(SCOPE_SQL.signingKeyCurrent, now).toArray()[0];
    if (!row) {
      const waiting = this.rows().sort((a, b) => a.signsFrom - b.signsFrom)[0];
      return waiting ? { kid: waiting.kid, signsFrom: waiting.signsFrom } : null;
    }
    this.sql.exec(SCOPE_SQL.signingKeyIssued, expSeconds, row.kid);
    return { kid: row.kid as string, sealed: new Uint8Array(row.sealed as ArrayBuffer) };
  }

  /**
   * Takes a key out. A key it had replaced and that still holds the policy
   * (retiring) is the signing key again: its replacement never took over.
   */
  remove(kid: string): boolean {
    const gone = this.rows().find((k) => k.kid === kid);
    if (!gone || this.sql.exec(SCOPE_SQL.signingKeyDelete, kid).rowsWritten === 0) return false;
    if (gone.replacedAt === null) this.sql.exec(SCOPE_SQL.signingKeysUnreplace, gone.signsFrom);
    return true;
  }

  /** Drops the keys retired by `now`; returns how many went. */
  retire(now: number, skewMs: number): number {
    let removed = 0;
    for (const k of this.rows()) {
      const at = ScopeKeys.retiresAt(k, skewMs);
      if (at !== undefined && at <= now && this.remove(k.kid)) removed++;
    }
    return removed;
  }

  /** When the next replaced key is due to retire; null if none is replaced. */
  nextRetirement(skewMs: number): number | null {
    const due = this.rows()
      .map((k) => ScopeKeys.retiresAt(k, skewMs))
      .filter((t): t is number => t !== undefined);
    return due.length === 0 ? null : Math.min(...due);
  }
}
