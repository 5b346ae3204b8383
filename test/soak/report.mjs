// The soak's summary: what was done, what was injected, what was found.
const ms = (t) => (t === undefined ? "n/a" : `${Math.round(t)} ms`);
const stats = (xs) => {
  if (xs.length === 0) return "none";
  const s = [...xs].sort((a, b) => a - b);
  return `${s.length} × min ${ms(s[0])}, median ${ms(s[Math.floor(s.length / 2)])}, max ${ms(s.at(-1))}`;
};

export function report({ mode, seconds, relaysStarted, history, runtime, checker, lifecycle, purges, recoveries, resets, socketRelays }) {
  const lines = [];
  const add = (k, v) => lines.push(`  ${k.padEnd(28)} ${v}`);
  lines.push(
    `soak (${mode}): ${Math.round(seconds)} s, ${relaysStarted} relays over the run, TTL ${checker.ttl} ms, purge bound TTL + ${checker.purgeBound} ms`,
  );
  add(
    "operations",
    `${history.ops} (${Object.entries(history.byOutcome)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")})`,
  );
  add(
    "by method",
    [...history.byMethod]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(", "),
  );
  add("error codes", [...history.codes].map(([k, v]) => `${k} ${v}`).join(", ") || "none");
  add(
    "faults injected",
    `runtime reset (SIGKILL+restart) ${runtime.faults.kill}, SIGSTOP>lease ${runtime.faults.freeze}, requests cut ${history.cuts}`,
  );
  add(
    "runtime resets",
    resets.length
      ? resets
          .map(
            (r) =>
              `${r.closed} sockets broke (${r.socketRelays} socket relays), ${r.stuck ? `${r.stuck} not back within 60 s` : `all back ${ms(r.backMs)} after the runtime answered, ${ms(r.graceLeftMs)} of restart grace left`}`,
          )
          .join("; ")
      : "none",
  );
  const c = checker.counts;
  add(
    "lease sockets",
    `${socketRelays} of ${relaysStarted} relays; ${history.byMethod.get("SocketBeat") ?? 0} beats, ${history.pongs} pongs; ${c.socketCloses} closes (${c.resetCloses} by a reset, ${c.lapsedCloses} lapsed); after a close back within the grace ${c.backInGrace}, later ${c.backLate}`,
  );
  add(
    "relay lifecycle",
    `new epoch ${lifecycle.restart}, Shutdown ${lifecycle.shutdown}, gone silent ${lifecycle.silent}, lease socket broken ${lifecycle.socketDrop}`,
  );
  add(
    "checked",
    `${checker.counts.checkpoints} checkpoints (${checker.counts.rowsChecked} rows), ${checker.counts.answersChecked} answers`,
  );
  add("lapses modelled / state_lost", `${checker.counts.lapsesModelled} / ${checker.counts.stateLost}`);
  const http = purges.filter((p) => !p.socket);
  const socket = purges.filter((p) => p.socket);
  add("purge after last heartbeat", stats(http.map((p) => p.delay)));
  add("the same, minus time down", stats(http.map((p) => p.upDelay)));
  add("purge after socket close", stats(socket.map((p) => p.delay)));
  add("the same, minus time down", stats(socket.map((p) => p.upDelay)));
  add(
    "recovery after a fault",
    recoveries.length
      ? recoveries.map((r) => `${r.fault} ${r.stuck ? `> ${ms(r.ms)} (${r.stuck} relays still re-registering)` : ms(r.ms)}`).join(", ")
      : "none",
  );
  add(
    "HTTP 5xx answers",
    `${history.serverErrors.length}${history.serverErrors.length ? ` (first: ${history.serverErrors[0].method} ${history.serverErrors[0].code} ${history.serverErrors[0].message})` : ""}`,
  );
  const byRule = new Map();
  for (const v of checker.violations) byRule.set(v.rule, (byRule.get(v.rule) ?? 0) + 1);
  add(
    "violations",
    checker.violations.length === 0 ? "0" : `${checker.violations.length} (${[...byRule].map(([k, v]) => `${k} ${v}`).join(", ")})`,
  );
  return lines.join("\n");
}
