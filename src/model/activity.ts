// A relay's reported activity (HeartbeatRequest.activity): validated into the
// plain data a RelayObject keeps with the lease and notes to the directory.
import type { RelayActivity } from "../gen/moqworker/v1/coordinator_pb.js";
import { RequestLimit } from "../gen/moqworker/v1/coordinator_pb.js";
import { toBase64Url } from "./base64url.js";
import { checkNamespace, checkRelayUrl, checkScopeName, checkTrack, invalid } from "./validate.js";

export const MAX_UPSTREAMS: number = RequestLimit.MAX_UPSTREAMS;
export const MAX_LINK_TRACKS: number = RequestLimit.MAX_LINK_TRACKS;
/** A day: an idle_ms beyond it is clamped (it only says "long ago"). */
const MAX_IDLE_MS = 24 * 3600 * 1000;

/** A pulled track: namespace fields as base64url (structured-clone and JSON friendly). */
export interface PulledTrackNote {
  fields: string[];
  track: string;
  subscribes: number;
}

export interface UpstreamNote {
  /** The upstream's origin URL with path "/", the form relays are matched by. */
  to: string;
  /** null = unscoped. */
  scope: string | null;
  idleMs: number;
  tracks: PulledTrackNote[];
}

export interface ActivityNote {
  upstreams: UpstreamNote[];
}

/** A relay URL reduced to its origin: the relay-link path (or any path) is not part of who the relay is. */
export function relayOrigin(url: string): string {
  return `${new URL(url).origin}/`;
}

/** Validates a heartbeat's activity; undefined stays undefined (nothing reported). */
export function checkActivity(activity: RelayActivity | undefined): ActivityNote | undefined {
  if (activity === undefined) return undefined;
  const field = "activity.upstreams";
  if (activity.upstreams.length > MAX_UPSTREAMS) {
    throw invalid(field, `has ${activity.upstreams.length} entries, more than ${MAX_UPSTREAMS}`);
  }
  const seen = new Set<string>();
  const upstreams = activity.upstreams.map((u, i) => {
    const at = `${field}[${i}]`;
    const to = relayOrigin(checkRelayUrl(`${at}.relay_url`, u.relayUrl));
    const scope = u.scope === undefined ? null : checkScopeName(`${at}.scope`, u.scope);
    const key = JSON.stringify([to, scope]);
    if (seen.has(key)) throw invalid(`${at}`, "repeats the relay_url and scope of an earlier entry");
    seen.add(key);
    if (u.tracks.length > MAX_LINK_TRACKS) {
      throw invalid(`${at}.tracks`, `has ${u.tracks.length} entries, more than ${MAX_LINK_TRACKS}`);
    }
    const tracks = u.tracks.map((t, j) => ({
      fields: checkNamespace(`${at}.tracks[${j}].namespace`, t.namespace).map(toBase64Url),
      track: checkTrack(`${at}.tracks[${j}].track`, t.track),
      subscribes: t.subscribes,
    }));
    return { to, scope, idleMs: Math.min(Number(u.idleMs), MAX_IDLE_MS), tracks };
  });
  return { upstreams };
}
