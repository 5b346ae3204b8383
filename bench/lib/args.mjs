// Command-line options of the bench scripts: node:util parseArgs (strict, so a
// misspelt option is an error rather than silently ignored), plus numbers. A
// bad option ends the script with its message and exit code 2.
import { parseArgs } from "node:util";

function usageError(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

/** Parses argv against `options` (parseArgs's format). */
export function benchArgs(options, argv = process.argv.slice(2)) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true }).values;
  } catch (err) {
    return usageError(err.message);
  }
}

/** The option as a positive number, or `fallback` when absent. */
export function positiveNumber(values, name, fallback) {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) usageError(`--${name} must be a positive number, got '${raw}'`);
  return n;
}
