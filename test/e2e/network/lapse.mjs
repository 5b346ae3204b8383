// Recovery after a lapse, shared by recovery.test.mjs (one round, asserted)
// and test/e2e/recovery.mjs (many rounds, measured).
//
// Setup: a Worker with a short LEASE_TTL_MS, scope S mapped to /S/pub
// (READ_WRITE) and /S/watch (READ_ONLY), relays A and B, a moq-clock publisher
// on A (lapseStack, publishingPair). A round freezes relay A (SIGSTOP) until the Worker has purged its
// registration (its lease lapsed), resumes it (SIGCONT) and measures the time
// until a NEW subscriber on B receives the publisher's next object.
import { now, Stack, waitFor } from "./harness.mjs";

export const SCOPE = "S";
// Below moq-native-ietf's 10 s QUIC idle timeout, so the publisher's session to
// the frozen relay outlives the freeze (what is tested is the Worker's state).
const MAX_FREEZE_MS = 9_000;

/** Worker with LEASE_TTL_MS = leaseTtlMs and ALLOW_UNSCOPED=false; scope S at /S/pub and /S/watch. */
export async function lapseStack({ leaseTtlMs, name = "lapse" }) {
  const stack = await Stack.start({ name, vars: { ALLOW_UNSCOPED: "false", LEASE_TTL_MS: String(leaseTtlMs) } });
  try {
    await stack.step(async () => {
      await stack.admin("PutPath", { path: `/${SCOPE}/pub`, scope: SCOPE, permissions: "PERMISSIONS_READ_WRITE" });
      await stack.admin("PutPath", { path: `/${SCOPE}/watch`, scope: SCOPE, permissions: "PERMISSIONS_READ_ONLY" });
    });
  } catch (e) {
    await stack.close();
    throw e;
  }
  return Object.assign(stack, { leaseTtlMs, intervalMs: Math.floor(leaseTtlMs / 3) });
}

/**
 * Relays `a` and `b` (by those names) with a moq-clock publisher of
 * e2e/<a> on A; resolves to { A, B, namespace } once a subscriber on B received.
 */
export async function publishingPair(stack, [a, b] = ["a", "b"]) {
  return stack.step(async () => {
    const A = await stack.relay(a);
    const B = await stack.relay(b);
    const namespace = `e2e/${a}`;
    stack.publish(A, `/${SCOPE}/pub`, { namespace, name: `pub-${a}` });
    await waitFor(`${namespace} registered by relay ${a}`, async () => (await stack.namespaces(SCOPE)).includes(`${namespace}@${A.host}`), {
      timeoutMs: 15_000,
    });
    const { sub } = await stack.subscribeUntilReceived(B, `/${SCOPE}/watch`, { namespace, timeoutMs: 20_000 });
    await sub.proc.stop();
    return { A, B, namespace };
  });
}

/**
 * One lapse: returns { purgeMs (freeze → purge seen), frozenMs, recoveryMs
 * (SIGCONT → first object at a new subscriber on B), reregisteredMs
 * (SIGCONT → A's namespace listed again), attempts }.
 */
export async function lapseRound(stack, { A, B, namespace }, { recoveryLimitMs }) {
  const { leaseTtlMs } = stack;
  const mine = `${namespace}@${A.host}`;
  if (!(await stack.namespaces(SCOPE)).includes(mine)) throw new Error(`before the freeze: ${mine} is not registered`);

  A.proc.signal("SIGSTOP");
  const frozenAt = now();
  let purgeMs;
  try {
    // Frozen until the Worker has purged A's registration and for longer than the lease.
    await waitFor(
      `the Worker to purge ${mine} while relay A is frozen (lease ${leaseTtlMs} ms)`,
      async () => {
        if (purgeMs === undefined && !(await stack.namespaces(SCOPE)).includes(mine)) purgeMs = now() - frozenAt;
        return purgeMs !== undefined && now() - frozenAt > leaseTtlMs + 200;
      },
      { timeoutMs: MAX_FREEZE_MS },
    );
  } catch (e) {
    A.proc.signal("SIGCONT");
    throw e;
  }
  A.proc.signal("SIGCONT");
  const resumedAt = now();

  let reregisteredMs;
  const watch = waitFor(
    `${mine} registered again after SIGCONT`,
    async () => {
      if (!(await stack.namespaces(SCOPE)).includes(mine)) return false;
      reregisteredMs = now() - resumedAt;
      return true;
    },
    { timeoutMs: recoveryLimitMs },
  );
  const received = stack.subscribeUntilReceived(B, `/${SCOPE}/watch`, { namespace, timeoutMs: recoveryLimitMs });
  // Both settle within the limit; the registration's failure explains the subscriber's.
  const [registered, subscribed] = await Promise.allSettled([watch, received]);
  if (registered.status === "rejected") {
    if (subscribed.status === "rejected") registered.reason.message += `\n${subscribed.reason.message}`;
    throw registered.reason;
  }
  if (subscribed.status === "rejected") throw subscribed.reason;
  const { sub, firstAt, attempts } = subscribed.value;
  const recoveryMs = firstAt - resumedAt;
  await sub.proc.stop();
  if (!A.proc.running) throw new Error(`relay A exited after the lapse: ${JSON.stringify(A.proc.exit)}`);
  return { purgeMs, frozenMs: resumedAt - frozenAt, recoveryMs, reregisteredMs, attempts };
}
