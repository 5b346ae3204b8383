#!/usr/bin/env node
// Runs the network end-to-end suites (npm run test:network): builds
// moq-worker-edge and the `announced` example once per MoQT draft, then runs
// every test/e2e/network/*.test.mjs one file at a time against those copies:
// each suite on the default draft-18 build (moq-relay-ietf 0.8), each again
// on the draft-16 build (0.7) but for those that say they need one draft or
// several (a first line `// network-e2e: once`).
//
//   node test/e2e/network/run.mjs [--keep-logs] [--draft D] [FILE...]
//
// Without FILE, all suites; with --draft, only that draft's leg. Exits with
// the first failing leg's node --test status.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DRAFTS, edgeBinaries } from "./harness.mjs";

const { values: opts, positionals } = parseArgs({
  options: { "keep-logs": { type: "boolean", default: false }, draft: { type: "string" } },
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
const once = (file) => readFileSync(file, "utf8").startsWith("// network-e2e: once");

const drafts = opts.draft ? [opts.draft] : Object.keys(DRAFTS);
const bin = mkdtempSync(join(tmpdir(), "moq-e2e-bin-"));
let status = 0;
try {
  const bins = {};
  for (const draft of Object.keys(DRAFTS)) {
    const started = Date.now();
    bins[draft] = edgeBinaries(bin, draft);
    console.log(`# built moq-worker-edge and announced for ${draft} in ${Math.round((Date.now() - started) / 1000)} s`);
  }
  const base = { ...process.env, MOQ_E2E_BINS: JSON.stringify(bins), ...(opts["keep-logs"] ? { KEEP_LOGS: "1" } : {}) };
  for (const [i, draft] of drafts.entries()) {
    // The first leg runs every suite; later legs repeat those bound to no draft.
    const leg = i === 0 ? files : files.filter((f) => !once(f));
    if (leg.length === 0) continue;
    const started = Date.now();
    console.log(`# network e2e on ${draft} (${DRAFTS[draft].relay}): ${leg.length} suites`);
    const env = { ...base, MOQ_DRAFT: draft };
    const code = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...leg], { stdio: "inherit", env }).status ?? 1;
    console.log(`# network e2e on ${draft}: ${code === 0 ? "passed" : "FAILED"} in ${Math.round((Date.now() - started) / 1000)} s`);
    if (status === 0) status = code;
  }
} finally {
  rmSync(bin, { recursive: true, force: true });
}
process.exitCode = status;
