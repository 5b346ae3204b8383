// MoQT versions a relay speaks (the Moq-Relay-Versions header), and whether
// two relays can talk. Drafts do not interoperate: a relay handed an upstream
// of another draft hangs or is refused, so answers leave such relays out.
import { Code, ConnectError } from "@connectrpc/connect";
import { RequestLimit } from "../gen/moqworker/v1/coordinator_pb.js";

export const VERSIONS_HEADER = "moq-relay-versions";

/** ALPN-style identifiers, as MoQT names its versions ("moqt-16", "moqt-18"). */
const VERSION_ID = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * The header's versions, in the relay's order without repeats; undefined when
 * it sent none (an edge older than the header, or a tool: routed to anyone).
 */
export function parseVersions(header: string | null): string[] | undefined {
  if (header === null) return undefined;
  const versions = [...new Set(header.split(",").map((v) => v.trim()))];
  const max = RequestLimit.MAX_MOQT_VERSIONS;
  const chars = RequestLimit.MAX_MOQT_VERSION_CHARS;
  if (versions.length > max) {
    throw new ConnectError(`${VERSIONS_HEADER} header: more than ${max} versions`, Code.InvalidArgument);
  }
  for (const v of versions) {
    if (v.length === 0 || v.length > chars || !VERSION_ID.test(v)) {
      throw new ConnectError(
        `${VERSIONS_HEADER} header: '${v.slice(0, chars)}' is not a MoQT version identifier (1 to ${chars} of a-z 0-9 . _ -, e.g. moqt-18)`,
        Code.InvalidArgument,
      );
    }
  }
  return versions;
}

/** Whether two relays share a MoQT version; a relay that never said (empty or undefined) is assumed to. */
export function speakTogether(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (!a || !b || a.length === 0 || b.length === 0) return true;
  return a.some((v) => b.includes(v));
}
