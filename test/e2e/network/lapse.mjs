// Recovery after a lapse, shared by recovery.test.mjs (one round, asserted)
// and test/e2e/recovery.mjs (many rounds, measured).
//
// Setup: a Worker with a short LEASE_TTL_MS, scope S mapped to /S/pub
// (READ_WRITE) and /S/watch (READ_ONLY), relays A and B, a moq-clock publisher
// on A. A round freezes relay A (SIGSTOP) until the Worker has purged its
// registration (its lease lapsed), resumes it (SIGCONT) and measures the time
// until a NEW subscriber on B receives the publisher's next object.
import { now, Stack, waitFor } from "./harness.mjs";

export const NAMESPACE = "e2e/lapse";
export const SCOPE = "S";
// Below moq-native-ietf's 10 s QUIC idle timeout, so the publisher's session to
// the frozen relay outlives the freeze (what is tested is the Worker's state).
const MAX_FREEZE_MS = 9_000;

/** Worker with LEASE_TTL_MS = leaseTtlMs, relays A and B, publisher on A; resolves once B's subscriber received. */
export async function lapseStack({ leaseTtlMs, name = "lapse" }) {
  const stack = await Stack.start({ name, vars: { ALLOW_UNSCOPED: "false", LEASE_TTL_MS: String(leaseTtlMs) } });
  try {
    await stack.step(async () => {
      await stack.admin("PutPath", { path: `/${SCOPE}/pub`, scope: SCOPE, permissions: "PERMISSIONS_READ_WRITE" });
      await stack.admin("PutPath", { path: `/${SCOPE}/watch`, scope: SCOPE, permissions: "PERMISSIONS_READ_ONLY" });
      const A = await stack.relay("a");
      const B = await stack.relay("b");
      stack.publish(A, `/${SCOPE}/pub`, { namespace: NAMESPACE, name: "pub-a" });
      await waitFor("the publisher's namespace registered by A", async () => (await stack.namespaces(SCOPE)).includes(`${NAMESPACE}@${A.host}`), {
        timeoutMs: 15_000,
      });
      const { sub } = await stack.subscribeUntilReceived(B, `/${SCOPE}/watch`, { namespace: NAMESPACE, timeoutMs: 20_000 });
      await sub.proc.stop();
      Object.assign(stack, { A, B, leaseTtlMs, intervalMs: Math.floor(leaseTtlMs / 3) });
    });
  } catch (e) {
    await stack.close();
    throw e;
  }
  return stack;
}

/**
 * One lapse: returns { purgeMs (freeze → purge seen), frozenMs, recoveryMs
 * (SIGCONT → first object at a new subscriber on B), reregisteredMs
 * (SIGCONT → A's namespace listed again), attempts }.
 */
export async function lapseRound(stack, { recoveryLimitMs }) {
  const { A, B, leaseTtlMs } = stack;
  const mine = `${NAMESPACE}@${A.host}`;
  if (!(await stack.namespaces(SCOPE)).includes(mine)) throw new Error(`before the freeze: ${mine} is not registered`);

  A.proc.signal("SIGSTOP");
  const frozenAt = now();
  try {
    await waitFor(`the Worker to purge ${mine} while relay A is frozen (lease ${leaseTtlMs} ms)`, async () => !(await stack.namespaces(SCOPE)).includes(mine), {
      timeoutMs: MAX_FREEZE_MS,
    });
  } catch (e) {
    A.proc.signal("SIGCONT");
    throw e;
  }
  const purgeMs = now() - frozenAt;
  A.proc.signal("SIGCONT");
  const resumedAt = now();

  let reregisteredMs;
  const watch = waitFor(`${mine} registered again`, async () => {
    if (!(await stack.namespaces(SCOPE)).includes(mine)) return false;
    reregisteredMs = now() - resumedAt;
    return true;
  }, { timeoutMs: recoveryLimitMs + 5_000 });
  const { sub, firstAt, attempts } = await stack.subscribeUntilReceived(B, `/${SCOPE}/watch`, { namespace: NAMESPACE, timeoutMs: recoveryLimitMs });
  const recoveryMs = firstAt - resumedAt;
  await sub.proc.stop();
  await watch;
  if (!A.proc.running) throw new Error(`relay A exited after the lapse: ${JSON.stringify(A.proc.exit)}`);
  return { purgeMs, frozenMs: resumedAt - frozenAt, recoveryMs, reregisteredMs, attempts };
}
