// Revoked relay tokens (AdminService.RevokeRelayToken; SECURITY.md "Revoking
// one relay's token"). A revocation is a cut-off per relay URL: that relay's
// tokens made up to the instant are refused (their iat_ms, auth/relay-token.ts),
// tokens minted later work. The list lives in the DirectoryObject; each
// isolate keeps a copy and checks every relay call against it in memory, so
// a call costs no extra object round trip. The guarantee:
//   - the isolate that served the revocation refuses at once;
//   - every isolate re-reads the list (only when its version changed) before
//     serving a call once its copy is REVOCATION_REFRESH_MS old, so any call
//     starting later than that after the revocation is refused everywhere;
//   - Heartbeats and writes that open a lease in a scope are also refused by
//     the relay's RelayObject at once (objects/relay.ts), so a revoked relay
//     cannot keep its lease or write rows back, whatever an isolate's copy.
// If the directory cannot answer, an isolate keeps its copy (or none) and
// tries again a refresh period later: reads by a revoked relay may then be
// served longer; its lease and writes are still refused by its RelayObject.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { directoryStub } from "../objects/stubs.js";
import { integerSetting, SETTINGS } from "../settings.js";

export const DEFAULT_REVOCATION_REFRESH_MS = SETTINGS.REVOCATION_REFRESH_MS.default;
/** A refresh waits this long for the directory, then the call goes on with the copy it has. */
const REFRESH_TIMEOUT_MS = 1000;

/** REVOCATION_REFRESH_MS (0: re-read before every call). */
export function revocationRefreshMs(env: Pick<Env, "REVOCATION_REFRESH_MS">): number {
  return integerSetting(env, "REVOCATION_REFRESH_MS");
}

export function revokedMessage(relay: string, beforeMs: number): string {
  return `relay token revoked: tokens of ${relay} made up to ${new Date(beforeMs).toISOString()} were revoked by an operator; mint a new one (CreateRelayToken)`;
}

interface Copy {
  version: number;
  cutoffs: Map<string, number>;
  checkedAt: number;
}

let copy: Copy = { version: -1, cutoffs: new Map(), checkedAt: -Infinity };
let refreshing: Promise<void> | null = null;

/** UNAUTHENTICATED if the relay's token, made at `issuedAtMs`, is revoked. */
export async function requireNotRevoked(env: Env, relay: string, issuedAtMs: number): Promise<void> {
  // The common case takes no await: the copy is fresh.
  if (Date.now() - copy.checkedAt >= revocationRefreshMs(env)) await refresh(env);
  const before = copy.cutoffs.get(relay);
  if (before !== undefined && issuedAtMs <= before) {
    throw new ConnectError(revokedMessage(relay, before), Code.Unauthenticated);
  }
}

/** Re-reads the list if it changed; one refresh at a time per isolate. */
function refresh(env: Env): Promise<void> {
  refreshing ??= (async () => {
    const startedAt = Date.now();
    let timer: ReturnType<typeof setTimeout> | null = null;
    try {
      const list = await Promise.race([
        directoryStub(env).revocations(copy.version),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${REFRESH_TIMEOUT_MS} ms`)), REFRESH_TIMEOUT_MS);
        }),
      ]);
      if (list) copy = { version: list.version, cutoffs: new Map(list.entries as [string, number][]), checkedAt: startedAt };
      else copy.checkedAt = startedAt;
    } catch (err) {
      copy.checkedAt = startedAt;
      console.warn(`revocation list not refreshed, the last copy is used: ${String(err)}`);
    } finally {
      if (timer !== null) clearTimeout(timer);
      refreshing = null;
    }
  })();
  return refreshing;
}

/** This isolate served a revocation: it applies at once here (the directory has it already). */
export function noteRevoked(relay: string, beforeMs: number): void {
  copy.cutoffs.set(relay, Math.max(copy.cutoffs.get(relay) ?? beforeMs, beforeMs));
}
