// Human output of the CLI: aligned tables, namespaces, times.
import Table from "cli-table3";
import type { Namespace } from "../src/gen/moqworker/v1/coordinator_pb.js";

/** Columns separated by two spaces, no borders: readable, and easy to grep or cut. */
export function table(head: string[], rows: string[][]): string {
  const t = new Table({
    head,
    chars: {
      top: "", "top-mid": "", "top-left": "", "top-right": "",
      bottom: "", "bottom-mid": "", "bottom-left": "", "bottom-right": "",
      left: "", "left-mid": "", mid: "", "mid-mid": "", right: "", "right-mid": "", middle: "  ",
    },
    style: { head: [], border: [], "padding-left": 0, "padding-right": 0, compact: true },
  });
  t.push(...rows);
  return t.toString().split("\n").map((l) => l.trimEnd()).join("\n");
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A namespace as "a/b/c". A field is shown as is when it is printable UTF-8
 * without "/", JSON-quoted when it is other UTF-8, and as 0x-hex otherwise, so
 * that what is shown names exactly one namespace. (The dashboard does the same.)
 */
export function namespaceText(ns: Namespace | undefined): string {
  const fields = ns?.fields ?? [];
  if (fields.length === 0) return "(all)";
  return fields.map(fieldText).join("/");
}

function fieldText(bytes: Uint8Array): string {
  try {
    const s = utf8.decode(bytes);
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u001f\u007f]/.test(s)) return s !== "" && !s.includes("/") ? s : JSON.stringify(s);
  } catch {
    // not UTF-8
  }
  return `0x${Buffer.from(bytes).toString("hex")}`;
}

export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
}

/** "3m12s" for a past Unix-ms time; "-" for none. */
export const age = (at: bigint | undefined, now = Date.now()) => (at ? span(now - Number(at)) : "-");

/** "in 8s" / "5s ago" for a Unix-ms time; "-" for none. */
export function relative(at: bigint | undefined, now = Date.now()): string {
  if (!at) return "-";
  const d = Number(at) - now;
  return d >= 0 ? `in ${span(d)}` : `${span(-d)} ago`;
}

export const scopeLabel = (s: string) => (s === "" ? "(unscoped)" : s);
