#!/usr/bin/env node
// Runs the network end-to-end suites (npm run test:network): builds
// moq-worker-edge and the `announced` example once, then runs every
// test/e2e/network/*.test.mjs one file at a time against those copies.
//
//   node test/e2e/network/run.mjs [--keep-logs] [FILE...]
//
// Without FILE, all suites. Exits with node --test's status.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { edgeBinaries } from "./harness.mjs";

const { values: opts, positionals } = parseArgs({
  options: { "keep-logs": { type: "boolean", default: false } },
  allowPositionals: true,
});
const here = dirname(fileURLToPath(import.meta.url));
const files =
  positionals.length > 0
    ? positionals
    : readdirSync(here)
        .filter((f) => f.endsWith(".test.mjs"))
        .sort()
        .map((f) => join(here, f));

const bin = mkdtempSync(join(tmpdir(), "moq-e2e-bin-"));
let status = 1;
try {
  const started = Date.now();
  const { edge, announced } = edgeBinaries(bin);
  console.log(`# built moq-worker-edge and announced in ${Math.round((Date.now() - started) / 1000)} s`);
  const env = { ...process.env, MOQ_EDGE_BIN: edge, MOQ_ANNOUNCED_BIN: announced, ...(opts["keep-logs"] ? { KEEP_LOGS: "1" } : {}) };
  status = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...files], { stdio: "inherit", env }).status ?? 1;
} finally {
  rmSync(bin, { recursive: true, force: true });
}
process.exitCode = status;
