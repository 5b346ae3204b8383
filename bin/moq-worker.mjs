#!/usr/bin/env node
// The `moq-worker` command (package.json "bin"). It runs the TypeScript CLI in
// cli/ straight from the repository (bin/ts-hooks.mjs).
import { canImportTypeScript, registerTypeScriptHooks } from "./ts-hooks.mjs";

if (!canImportTypeScript) {
  console.error(
    `moq-worker: needs Node >= 22.15 (this is ${process.version}); ` +
      "run it as `npx moq-worker` in the repository, which uses the project's Node",
  );
  process.exit(1);
}
registerTypeScriptHooks();

const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv);
