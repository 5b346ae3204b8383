// Fails when README.md or a page of docs/ names a file of the repository that
// does not exist, so the docs cannot drift from the tree unnoticed. Checked:
// repository paths in backticks (`src/…`, `edge/…`, `test/…`, `bench/…`,
// `docs/…`, `schema/…`, `scripts/…`, `cli/…`; a `*` matches within one
// directory level), the same paths in code blocks, and the targets of
// relative Markdown links. Paths under a directory .gitignore lists
// (test/artifacts/, …) are what runs write: skipped.
// Run by `npm run lint`; `node scripts/check-doc-paths.mjs [files…]` checks other files.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PREFIXES = ["src/", "edge/", "test/", "bench/", "docs/", "schema/", "scripts/", "cli/"];
/** A word in a code block that starts with a checked prefix. */
const CODE_WORD = new RegExp(`(?:^|[\\s(])((?:${PREFIXES.join("|")})\\S*)`, "g");

/** The directories .gitignore lists (`dir/` lines): what runs write, never in a checkout. */
const OUTPUTS = readFileSync(join(ROOT, ".gitignore"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l.endsWith("/") && !l.startsWith("#"));

/** README.md and docs/*.md, or the files named on the command line. */
function docs() {
  const args = process.argv.slice(2);
  if (args.length > 0) return args.map((a) => resolve(a));
  const pages = readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => join(ROOT, "docs", f));
  return [join(ROOT, "README.md"), ...pages];
}

/** Whether `path` (relative to the root, maybe with `*` in its last parts) names something in the tree. */
function exists(path) {
  if (!path.includes("*")) return existsSync(join(ROOT, path));
  // One directory level per `*` segment: walk the parts, matching each against the directory's entries.
  let dirs = [ROOT];
  for (const part of path.split("/").filter((p) => p !== "")) {
    const re = new RegExp(`^${part.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", "[^/]*")}$`);
    dirs = dirs.flatMap((d) => {
      if (!part.includes("*")) return existsSync(join(d, part)) ? [join(d, part)] : [];
      try {
        return readdirSync(d)
          .filter((e) => re.test(e))
          .map((e) => join(d, e));
      } catch {
        return [];
      }
    });
  }
  return dirs.length > 0;
}

/** The repository paths a backticked span names: its first word, if it starts with a checked prefix. */
function pathOfSpan(span) {
  const word = span.trim().split(/\s+/)[0] ?? "";
  if (!PREFIXES.some((p) => word.startsWith(p))) return undefined;
  // A trailing `:line`, `#anchor`, or punctuation is not part of the path; `<name>` is a placeholder.
  const path = word
    .replace(/[#:].*$/, "")
    .replace(/[),.;]+$/, "")
    .replaceAll(/<[^>]*>/g, "*");
  return path;
}

/** [line, path, base] of every repository path and relative link target on a page. */
function* named(text) {
  let fenced = false;
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trimStart().startsWith("```")) {
      fenced = !fenced;
      continue;
    }
    if (fenced) {
      // Code blocks (trees, commands): every word that starts with a checked prefix.
      for (const m of line.matchAll(CODE_WORD)) {
        yield [i + 1, pathOfSpan(m[1]), "root"];
      }
      continue;
    }
    for (const m of line.matchAll(/`([^`]+)`/g)) {
      const path = pathOfSpan(m[1]);
      if (path !== undefined) yield [i + 1, path, "root"];
    }
    for (const m of line.replaceAll(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1].replace(/#.*$/, "");
      if (target === "" || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      yield [i + 1, target, "page"];
    }
  }
}

let missing = 0;
let checked = 0;
for (const file of docs()) {
  const text = readFileSync(file, "utf8");
  for (const [line, path, base] of named(text)) {
    const fromRoot = base === "root" ? path : relative(ROOT, resolve(dirname(file), path));
    if (OUTPUTS.some((dir) => fromRoot.startsWith(dir))) continue;
    checked++;
    if (fromRoot.startsWith("..") || !exists(fromRoot)) {
      console.error(`${relative(ROOT, file)}:${line}: names ${path}, which is not in the repository`);
      missing++;
    }
  }
}
if (missing > 0) {
  console.error(`check-doc-paths: ${missing} path(s) named in the docs do not exist`);
  process.exit(1);
}
console.log(`check-doc-paths: ${checked} paths named in the docs, all present`);
