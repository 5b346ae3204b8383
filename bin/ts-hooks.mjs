// Lets Node import the repository's TypeScript (cli/, src/gen) straight from
// the source tree: Node's own type stripping, in "transform" mode because the
// generated protobuf code has enums, and a resolver that maps the generated
// code's ".js" imports to the ".ts" files beside them. Used by the CLI
// (bin/moq-worker.mjs) and by the Node tests and benchmarks that speak protobuf.
import { existsSync, readFileSync } from "node:fs";
import module from "node:module";

/** Whether this Node can (>= 22.15). */
export const canImportTypeScript = typeof module.registerHooks === "function" && typeof module.stripTypeScriptTypes === "function";

// stripTypeScriptTypes is experimental in Node 22 and says so once per process; the CLI's output stays clean.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === "string" ? rest[0] : rest[0]?.type;
  if (type === "ExperimentalWarning" && /Type Stripping|stripTypeScriptTypes|registerHooks/i.test(String(warning))) return;
  return emitWarning.call(process, warning, ...rest);
};

export function registerTypeScriptHooks() {
  module.registerHooks({
    resolve(specifier, context, nextResolve) {
      if (context.parentURL?.endsWith(".ts") && specifier.startsWith(".") && specifier.endsWith(".js")) {
        const ts = new URL(`${specifier.slice(0, -3)}.ts`, context.parentURL);
        if (existsSync(ts)) return { url: ts.href, format: "module", shortCircuit: true };
      }
      return nextResolve(specifier, context);
    },
    load(url, context, nextLoad) {
      if (url.startsWith("file:") && url.endsWith(".ts")) {
        const source = module.stripTypeScriptTypes(readFileSync(new URL(url), "utf8"), { mode: "transform", sourceUrl: url });
        return { format: "module", source, shortCircuit: true };
      }
      return nextLoad(url, context);
    },
  });
}
