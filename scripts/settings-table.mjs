// The README's table of Worker variables is made from src/settings.ts, and
// wrangler.toml's [vars] deploy that table's defaults. Without arguments this
// checks both and fails on a difference (run by `npm run lint`);
// `node scripts/settings-table.mjs --write` rewrites the README's table.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { accepted, SETTINGS } from "../src/settings.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const README = join(ROOT, "README.md");
const BEGIN = "<!-- settings table: made by scripts/settings-table.mjs from src/settings.ts -->";
const END = "<!-- end of settings table -->";

function table() {
  const rows = Object.entries(SETTINGS).map(([name, s]) => {
    const fallback = s.kind === "secret" ? "unset (secret)" : `\`${s.default}\``;
    return `| \`${name}\` | ${fallback} | ${accepted(s)} | ${s.meaning} |`;
  });
  return ["| variable | default | accepts | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

/** wrangler.toml's [vars] as name → value (the file's `NAME = "value"` lines). */
function wranglerVars() {
  const toml = readFileSync(join(ROOT, "wrangler.toml"), "utf8");
  const section = /^\[vars\]\n([\s\S]*?)(?=^\[)/m.exec(toml)?.[1] ?? "";
  return new Map([...section.matchAll(/^([A-Z0-9_]+)\s*=\s*"([^"]*)"/gm)].map((m) => [m[1], m[2]]));
}

const problems = [];
for (const [name, value] of wranglerVars()) {
  const s = SETTINGS[name];
  if (s === undefined) problems.push(`wrangler.toml [vars] sets ${name}, which src/settings.ts does not list`);
  else if (s.kind === "secret") problems.push(`wrangler.toml [vars] sets ${name}, a secret (wrangler secret put)`);
  else if (value !== String(s.default))
    problems.push(`wrangler.toml [vars] sets ${name} = "${value}", src/settings.ts's default is ${s.default}`);
}

const readme = readFileSync(README, "utf8");
const start = readme.indexOf(BEGIN);
const end = readme.indexOf(END);
if (start < 0 || end < start) {
  problems.push(`README.md has no settings table between "${BEGIN}" and "${END}"`);
} else {
  const made = `${BEGIN}\n${table()}\n${END}`;
  const current = readme.slice(start, end + END.length);
  if (current !== made) {
    if (process.argv.includes("--write")) {
      writeFileSync(README, readme.slice(0, start) + made + readme.slice(end + END.length));
      console.log("settings-table: README.md's table rewritten from src/settings.ts");
    } else {
      problems.push("README.md's settings table differs from src/settings.ts: run node scripts/settings-table.mjs --write");
    }
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(`settings-table: ${p}`);
  process.exit(1);
}
console.log(`settings-table: README.md and wrangler.toml agree with src/settings.ts (${Object.keys(SETTINGS).length} variables)`);
