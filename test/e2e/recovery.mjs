#!/usr/bin/env node
// Measures recovery after a lapse over real QUIC on 127.0.0.1: relay A (with a
// moq-clock-ietf publisher) is frozen with SIGSTOP until the Worker has purged
// its registration, then resumed with SIGCONT; the time from SIGCONT to the
// first object at a NEW subscriber on relay B is one sample. Rounds run on one
// Worker and one pair of relays (test/e2e/network/lapse.mjs has the details).
//
//   node test/e2e/recovery.mjs [--rounds=N] [--lease-ttl-ms=MS] [--keep-logs]
//
// Prints one line per round, then min/median/max. Exits non-zero if a round
// fails (with the relays' logs).
import { parseArgs } from "node:util";
import { lapseRound, lapseStack, publishingPair } from "./network/lapse.mjs";

const { values: opts } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    "lease-ttl-ms": { type: "string", default: "3000" },
    "keep-logs": { type: "boolean", default: false },
  },
});
const rounds = Number(opts.rounds);
const leaseTtlMs = Number(opts["lease-ttl-ms"]);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer (got ${opts.rounds})`);
if (!Number.isInteger(leaseTtlMs) || leaseTtlMs < 1000 || leaseTtlMs > 8000) {
  // Above 8 s the freeze would outlast the clients' 10 s QUIC idle timeout.
  throw new Error(`--lease-ttl-ms must be an integer in 1000..8000 (got ${opts["lease-ttl-ms"]})`);
}
if (opts["keep-logs"]) process.env.KEEP_LOGS = "1";

const intervalMs = Math.floor(leaseTtlMs / 3);
// Not a pass/fail bound on speed: a round that takes longer has not recovered.
const recoveryLimitMs = intervalMs + 15_000;
const ms = (t) => `${Math.round(t)} ms`;

const stack = await lapseStack({ leaseTtlMs, name: "recovery-time" });
const samples = [];
let failed = false;
try {
  const pair = await publishingPair(stack);
  await stack.step(async () => {
    for (let i = 1; i <= rounds; i++) {
      const r = await lapseRound(stack, pair, { recoveryLimitMs });
      samples.push(r);
      console.log(
        `round ${i}/${rounds}: frozen ${ms(r.frozenMs)} (purged after ${ms(r.purgeMs)}); after SIGCONT re-registered in ${ms(r.reregisteredMs)}, ` +
          `first object at a new subscriber on B in ${ms(r.recoveryMs)} (${r.attempts} subscribe attempts)`,
      );
    }
  });
} catch (e) {
  failed = true;
  console.error(e.message);
} finally {
  await stack.close();
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return `min ${ms(s[0])}, median ${ms(median)}, max ${ms(s[s.length - 1])}`;
};
if (samples.length > 0) {
  console.log(`lease ${leaseTtlMs} ms, heartbeat interval ${intervalMs} ms, ${samples.length} rounds`);
  console.log(`SIGCONT -> first object at a new subscriber on B: ${stats(samples.map((r) => r.recoveryMs))}`);
  console.log(`SIGCONT -> namespace registered again:           ${stats(samples.map((r) => r.reregisteredMs))}`);
}
console.log(`${samples.length} passed, ${failed ? 1 : 0} failed`);
process.exitCode = failed ? 1 : 0;
