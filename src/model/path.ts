// Connection path normalisation (moq-rs PR #145, moq-transport
// `normalize_connection_path`). The rules run in the order listed in
// docs/architecture.md ("Connection paths"); the first that applies decides.
import { RequestLimit } from "../gen/moqworker/v1/coordinator_pb.js";

export const MAX_PATH_BYTES: number = RequestLimit.MAX_PATH_BYTES;

export type NormalizedPath =
  | { kind: "none" } // no path: the session is unscoped
  | { kind: "path"; path: string }
  | { kind: "invalid"; reason: string };

const utf8 = new TextEncoder();

export function normalizeConnectionPath(raw: string | undefined): NormalizedPath {
  if (raw === undefined || raw === "" || raw === "/") return { kind: "none" };
  if (!raw.isWellFormed()) return { kind: "invalid", reason: "path is not valid UTF-8" };
  const bytes = utf8.encode(raw).length;
  if (bytes > MAX_PATH_BYTES) {
    return { kind: "invalid", reason: `path is ${bytes} bytes, longer than ${MAX_PATH_BYTES}` };
  }
  if (!raw.startsWith("/")) return { kind: "invalid", reason: "path must start with '/'" };
  const trimmed = raw.replace(/\/+$/, "");
  if (trimmed === "") return { kind: "none" };
  const segments = trimmed.slice(1).split("/");
  for (const [i, segment] of segments.entries()) {
    if (segment === "") return { kind: "invalid", reason: `path segment ${i + 1} is empty` };
    if (segment.includes("%")) {
      return { kind: "invalid", reason: `path segment ${i + 1} contains '%' (percent-encoding is not allowed)` };
    }
    if (segment === "." || segment === "..") {
      return { kind: "invalid", reason: `path segment ${i + 1} is '${segment}'` };
    }
  }
  return { kind: "path", path: trimmed };
}
