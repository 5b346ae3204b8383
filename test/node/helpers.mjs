// Shared by the node-side tests (npm run test:ops): a real `wrangler dev`
// Worker on a free loopback port, the CLI as a child process, and relay calls.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT, DEV_ADMIN_TOKEN, call, freePort, startWorker } from "../../scripts/lib/dev-worker.mjs";

export { ROOT, DEV_ADMIN_TOKEN, call, freePort };

/** A fresh Worker (own state dir) for one test file. */
export async function worker(vars = {}) {
  return startWorker({ port: await freePort(), vars });
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

const b64 = (s) => Buffer.from(s).toString("base64");
/** "a/b" → Namespace JSON {fields: [base64("a"), base64("b")]}. */
export const ns = (path) => ({ fields: path.split("/").map(b64) });

/** A relay identity calling the coordinator over Connect JSON. */
export async function relay(baseUrl, url, epoch = "boot-1") {
  const { token } = await call(baseUrl, "AdminService", "CreateRelayToken", { relayUrl: url }, DEV_ADMIN_TOKEN);
  return {
    token,
    url,
    call: (method, body = {}) => call(baseUrl, "CoordinatorService", method, body, token),
    heartbeat: (addrs = []) => call(baseUrl, "CoordinatorService", "Heartbeat", { epoch, addrs }, token),
  };
}
