// Shared by the operations tests (npm run test:ops): a real `wrangler dev`
// Worker on a free loopback port, the CLI as a child process, and relay calls.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { call, ns, relayToken } from "../lib/rpc.mjs";
import { DEV_ADMIN_TOKEN, freePort, ROOT, startWorker } from "../lib/worker.mjs";

export { call, DEV_ADMIN_TOKEN, freePort, ns, ROOT };

/** A fresh Worker (own state dir) for one test file. */
export function worker(vars = {}) {
  return startWorker({ vars });
}

/**
 * Runs the CLI's bin with this Node; resolves to {code, stdout, stderr}.
 * `env` replaces the MOQ_WORKER_* variables (none are inherited).
 */
export function cli(args, { env = {}, command = [process.execPath, join(ROOT, "bin", "moq-worker.mjs")] } = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MOQ_WORKER_")));
  const child = spawn(command[0], [...command.slice(1), ...args], { cwd: ROOT, env: { ...clean, ...env } });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** A relay identity calling the coordinator over Connect JSON; `versions`: its Moq-Relay-Versions header. */
export async function relay(baseUrl, url, epoch = "boot-1", versions) {
  const token = await relayToken(baseUrl, url);
  const headers = versions === undefined ? {} : { "moq-relay-versions": versions };
  return {
    token,
    url,
    call: (method, body = {}) => call(baseUrl, "CoordinatorService", method, body, token, headers),
    heartbeat: (addrs = []) => call(baseUrl, "CoordinatorService", "Heartbeat", { epoch, addrs }, token, headers),
  };
}
