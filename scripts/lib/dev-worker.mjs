// Starts and stops a local `wrangler dev` Worker for tests, benchmarks and
// scripts. wrangler spawns workerd as a grandchild, so it runs in its own
// process group (detached) and the whole group is stopped.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DEV_ADMIN_TOKEN = "dev-admin-token";
export const DEV_TOKEN_SECRET = "dev-token-secret";

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The variables `npm start` runs with (documented in the README). */
export function devVars(extra = {}) {
  return { ADMIN_TOKEN: DEV_ADMIN_TOKEN, TOKEN_SECRET: DEV_TOKEN_SECRET, ALLOW_UNSCOPED: "true", ...extra };
}

/**
 * Starts `wrangler dev` on 127.0.0.1:port with state under persistTo (a fresh
 * temp dir by default). Resolves once /healthz answers.
 */
export async function startWorker({ port, persistTo, vars = {}, log = false, timeoutMs = 90_000 } = {}) {
  const state = persistTo ?? mkdtempSync(join(tmpdir(), "moq-worker-state-"));
  const args = ["wrangler", "dev", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state,
    "--inspector-port", "0", "--show-interactive-dev-session=false"];
  for (const [k, v] of Object.entries(devVars(vars))) args.push("--var", `${k}:${v}`);
  const child = spawn("npx", args, {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", log ? "inherit" : "pipe", log ? "inherit" : "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
  });
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const worker = {
    url,
    state,
    pid: child.pid,
    output: () => output,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      try {
        process.kill(-child.pid, signal);
      } catch {
        return;
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {}
      }, 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${output}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return worker;
    } catch {}
    if (Date.now() > deadline) {
      await worker.stop("SIGKILL");
      throw new Error(`wrangler dev did not answer on ${url} within ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Minimal Connect JSON call, for scripts: throws on a Connect error. */
export async function call(baseUrl, service, method, body, token, headers = {}) {
  const res = await fetch(`${baseUrl}/moqworker.v1.${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) {
    const err = new Error(`${method}: ${json.code}: ${json.message}`);
    err.code = json.code;
    throw err;
  }
  return json;
}

/**
 * The relay URL a coordinator answer names, without the relay-link path that
 * scoped answers put in place of its path (`/_relay/<scope>/<mac>`, SECURITY.md
 * "Relay links"): for checks about which relay was chosen.
 */
export const registeredUrl = (url) => url?.replace(/\/_relay\/[A-Za-z0-9_-]+\/[A-Za-z0-9_-]+$/, "/");
