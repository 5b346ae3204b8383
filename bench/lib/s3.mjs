// A throwaway S3-compatible store on loopback for workerd's cluster mode,
// which keeps its shared state (instance leases, object owners, each object's
// write log) in a bucket. moto's server answers the conditional writes
// (If-None-Match / If-Match) the cluster's ownership claims rely on. It comes
// from PyPI into a virtualenv under ~/.cache, made on first use.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { freePort, spawnLogged } from "../../test/e2e/lib/worker.mjs";

const MOTO = "moto[server]==5.2.5";
const VENV = process.env.MOQ_S3_VENV ?? join(homedir(), ".cache", "moq-worker", "s3-venv");

/** The moto_server binary, installing it into VENV when missing. */
export function motoServer() {
  const bin = join(VENV, "bin", "moto_server");
  if (existsSync(bin)) return bin;
  console.error(`s3: creating ${VENV} with ${MOTO} (PyPI)`);
  execFileSync("python3", ["-m", "venv", VENV], { stdio: "inherit" });
  execFileSync(join(VENV, "bin", "pip"), ["install", "--quiet", MOTO], { stdio: "inherit" });
  return bin;
}

/**
 * Starts moto on a free loopback port with one empty bucket; resolves to
 * { endpoint, bucket, bucketOptions (for a workerd cluster), stop() }.
 */
export async function startS3({ bucket = "moq-cluster" } = {}) {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const p = spawnLogged(motoServer(), ["-H", "127.0.0.1", "-p", String(port)]);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!p.running()) throw new Error(`moto_server exited:\n${p.output()}`);
    try {
      // moto does not check signatures: a plain PUT creates the bucket.
      const res = await fetch(`${endpoint}/${bucket}`, { method: "PUT" });
      if (res.ok) break;
    } catch {}
    if (Date.now() > deadline) {
      await p.stop("SIGKILL");
      throw new Error(`moto_server did not answer on ${endpoint}:\n${p.output()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const bucketOptions = [`aws_endpoint=${endpoint}`, "aws_region=us-east-1", "aws_access_key_id=local", "aws_secret_access_key=local"];
  return { endpoint, bucket, bucketOptions, stop: () => p.stop() };
}
