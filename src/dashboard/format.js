// How operators see namespaces and times: the one formatting module of the CLI
// (cli/format.ts imports it) and of the dashboard page (src/dashboard/serve.ts
// inlines it into the page's script). So that it runs unchanged in both, it is
// plain JavaScript with no imports, and declares only top-level
// `export function` / `export const` (the page drops the `export` keywords);
// `npm run generate` copies it into src/gen/dashboard/format-source.ts.

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * One namespace field: as is when it is printable UTF-8 without "/",
 * JSON-quoted when it is other UTF-8, and as 0x-hex otherwise, so that what is
 * shown names exactly one namespace.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function fieldText(bytes) {
  try {
    const s = utf8.decode(bytes);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this looks for
    if (!/[\u0000-\u001f\u007f]/.test(s)) return s !== "" && !s.includes("/") ? s : JSON.stringify(s);
  } catch {
    // not UTF-8
  }
  return `0x${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * A namespace as "a/b/c"; the empty prefix (every namespace) as "(all)".
 * @param {readonly Uint8Array[] | undefined} fields
 * @returns {string}
 */
export function namespaceText(fields) {
  return fields?.length ? fields.map(fieldText).join("/") : "(all)";
}

/**
 * A duration, coarsely: "42s", "3m07s", "2h05m", "1d03h".
 * @param {number} ms
 * @returns {string}
 */
export function span(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const two = (/** @type {number} */ n) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor((s % 86400) / 3600))}h`;
}

/** What a missing time or value is shown as. */
export const NONE = "-";

/**
 * How long ago a Unix-ms time was ("3m12s"); NONE for none.
 * @param {bigint | number | string | undefined} at  Unix ms (JSON gives a string, protobuf-es a bigint)
 * @param {number} [now]
 * @returns {string}
 */
export function age(at, now = Date.now()) {
  return at ? span(now - Number(at)) : NONE;
}

/**
 * A Unix-ms time relative to now: "in 8s" or "5s ago"; NONE for none.
 * @param {bigint | number | string | undefined} at
 * @param {number} [now]
 * @returns {string}
 */
export function relative(at, now = Date.now()) {
  if (!at) return NONE;
  const d = Number(at) - now;
  return d >= 0 ? `in ${span(d)}` : `${span(-d)} ago`;
}

/**
 * A scope name; "" is the unscoped space.
 * @param {string} scope
 * @returns {string}
 */
export function scopeLabel(scope) {
  return scope === "" ? "(unscoped)" : scope;
}
