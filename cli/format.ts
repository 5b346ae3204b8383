// Human output of the CLI: aligned tables; namespaces and times are shown as
// the dashboard shows them (one module: src/dashboard/format.js).
import Table from "cli-table3";
import { namespaceText as sharedNamespaceText } from "../src/dashboard/format.js";
import type { Namespace } from "../src/gen/moqworker/v1/coordinator_pb.js";

export { age, NONE, relative, scopeLabel, span } from "../src/dashboard/format.js";

/** Columns separated by two spaces, no borders: readable, and easy to grep or cut. */
export function table(head: string[], rows: string[][]): string {
  const t = new Table({
    head,
    // biome-ignore format: one line per border group reads better than one per key
    chars: {
      top: "", "top-mid": "", "top-left": "", "top-right": "",
      bottom: "", "bottom-mid": "", "bottom-left": "", "bottom-right": "",
      left: "", "left-mid": "", mid: "", "mid-mid": "", right: "", "right-mid": "", middle: "  ",
    },
    style: { head: [], border: [], "padding-left": 0, "padding-right": 0, compact: true },
  });
  t.push(...rows);
  return t
    .toString()
    .split("\n")
    .map((l) => l.trimEnd())
    .join("\n");
}

/** A namespace as "a/b/c" (src/dashboard/format.js, shared with the dashboard). */
export const namespaceText = (ns: Namespace | undefined): string => sharedNamespaceText(ns?.fields);
