// Request validation. Every check names the offending field so a caller can
// fix its request; failures are INVALID_ARGUMENT and happen before any state
// is touched.
import { Code, ConnectError } from "@connectrpc/connect";
import { type Namespace, NamespaceLimit, RequestLimit } from "../gen/moqworker/v1/coordinator_pb.js";

// The limits are the contract's (schema/moqworker/v1/coordinator.proto), shared with the edge.
export const MAX_NAMESPACE_FIELDS: number = NamespaceLimit.MAX_FIELDS;
export const MAX_NAMESPACE_BYTES: number = NamespaceLimit.MAX_BYTES;
export const MAX_TRACK_BYTES: number = RequestLimit.MAX_TRACK_BYTES;
export const MAX_SCOPE_BYTES: number = RequestLimit.MAX_SCOPE_BYTES;
export const MAX_URL_CHARS: number = RequestLimit.MAX_URL_CHARS;
export const MAX_EPOCH_CHARS: number = RequestLimit.MAX_EPOCH_CHARS;
export const MAX_ADDRS: number = RequestLimit.MAX_ADDRS;

const utf8 = new TextEncoder();

export function invalid(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);
}

/** A namespace (1..32 fields) or, with allowEmpty, a prefix (0..32 fields). */
export function checkNamespace(
  field: string,
  ns: Pick<Namespace, "fields"> | undefined,
  opts: { allowEmpty?: boolean } = {},
): Uint8Array[] {
  const fields = ns?.fields ?? [];
  if (ns === undefined && !opts.allowEmpty) throw invalid(field, "is required");
  if (fields.length === 0 && !opts.allowEmpty) throw invalid(field, "must have at least 1 field");
  if (fields.length > MAX_NAMESPACE_FIELDS) {
    throw invalid(field, `has ${fields.length} fields, more than ${MAX_NAMESPACE_FIELDS}`);
  }
  const total = fields.reduce((n, f) => n + f.length, 0);
  if (total > MAX_NAMESPACE_BYTES) {
    throw invalid(field, `is ${total} bytes, more than ${MAX_NAMESPACE_BYTES}`);
  }
  return fields;
}

/** 1..max bytes of well-formed UTF-8; `ifEmpty` is the complaint about "". */
function checkUtf8(field: string, value: string, max: number, ifEmpty = "must not be empty"): string {
  if (value === "") throw invalid(field, ifEmpty);
  if (!value.isWellFormed()) throw invalid(field, "is not valid UTF-8");
  const bytes = utf8.encode(value).length;
  if (bytes > max) throw invalid(field, `is ${bytes} bytes, more than ${max}`);
  return value;
}

export function checkTrack(field: string, track: string): string {
  return checkUtf8(field, track, MAX_TRACK_BYTES);
}

/** A scope name as it appears in requests: 1..256 bytes of printable UTF-8. */
export function checkScopeName(field: string, scope: string): string {
  checkUtf8(field, scope, MAX_SCOPE_BYTES, "must not be empty (leave it out for unscoped)");
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\u0000-\u001f\u007f]/.test(scope)) throw invalid(field, "must not contain control characters");
  return scope;
}

/** An absolute https URL; returns its canonical form (what we store and compare). */
export function checkRelayUrl(field: string, url: string): string {
  if (url === "") throw invalid(field, "is required");
  if (url.length > MAX_URL_CHARS) throw invalid(field, `is longer than ${MAX_URL_CHARS} characters`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(field, `'${url.slice(0, 100)}' is not a URL`);
  }
  if (parsed.protocol !== "https:") throw invalid(field, `must be an https URL, not ${parsed.protocol}`);
  if (parsed.username || parsed.password) throw invalid(field, "must not contain credentials");
  return parsed.href;
}

/** Socket address "ip:port" or "[ipv6]:port" as moq-rs prints it. */
export function checkSocketAddr(field: string, addr: string): string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[3]) > 65535) throw invalid(field, `'${addr.slice(0, 100)}' is not an ip:port socket address`);
  return addr;
}
