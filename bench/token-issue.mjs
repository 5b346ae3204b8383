// What issuing tokens costs (issue 25): AdminService.IssueToken (a CAT,
// ES256-signed by a scope key the Worker holds) against CreateRelayToken (an
// HS256 JWT, the credential relays already get), in one run, closed loop at a
// fixed concurrency: tokens per second and the server's CPU per token.
//
// Called by bench/run.mjs on its bare-workerd setup (results under `tokens`);
// alone against a running Worker: npx node bench/token-issue.mjs --url http://127.0.0.1:8787
import { parseArgs } from "node:util";
import { call, ns } from "../test/e2e/lib/rpc.mjs";
import { DEV_ADMIN_TOKEN } from "../test/e2e/lib/worker.mjs";
import { cpuMs } from "./lib/systems.mjs";

const admin = (url, method, body) => call(url, "AdminService", method, body, DEV_ADMIN_TOKEN);

/** Calls `method` with `body` from `concurrency` loops for `ms`; tokens made, and the server's CPU per token when `pids` is known. */
async function closedLoop({ url, pids, method, body, concurrency, ms }) {
  const cpu0 = pids ? cpuMs(pids()) : undefined;
  const t0 = performance.now();
  let count = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() - t0 < ms) {
        await admin(url, method, body);
        count++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpu0 === undefined ? undefined : cpuMs(pids()) - cpu0;
  return {
    method,
    tokens: count,
    tokensPerSecond: Math.round(count / seconds),
    workerdCpuMsPerToken: cpu === undefined ? undefined : +(cpu / count).toFixed(3),
  };
}

/** Rows for IssueToken (the Worker's scope key) and CreateRelayToken, after a warm-up of each. */
export async function tokenIssue({ url, pids, concurrency = 8, durationMs = 10_000, log = () => {} }) {
  const scope = `bench-tokens-${Math.random().toString(36).slice(2, 8)}`;
  await admin(url, "RotateScopeKey", { scope });
  const issue = {
    scope,
    grants: ["TOKEN_GRANT_SUBSCRIBE"],
    namespacePrefix: ns("live/cam"),
    ttlSeconds: 600,
  };
  const relay = { relayUrl: "https://bench-token.example/" };
  const rows = [];
  for (const [method, body] of [
    ["IssueToken", issue],
    ["CreateRelayToken", relay],
  ]) {
    await closedLoop({ url, method, body, concurrency, ms: Math.min(1000, durationMs / 4) });
    const row = await closedLoop({ url, pids, method, body, concurrency, ms: durationMs });
    log(`tokens: ${method} ${row.tokensPerSecond}/s, ${row.workerdCpuMsPerToken ?? "?"} ms CPU each`);
    rows.push(row);
  }
  return rows;
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const { values } = parseArgs({
    options: { url: { type: "string", default: "http://127.0.0.1:8787" }, seconds: { type: "string", default: "10" } },
  });
  const rows = await tokenIssue({ url: values.url, durationMs: Number(values.seconds) * 1000, log: console.log });
  console.table(rows);
}
