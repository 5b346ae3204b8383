// The last few versions of the live-peer list, for answering a relay with
// what changed since the version it holds, or with one page of a version.
// Peers that did not change between versions are the same objects, so the
// versions kept cost little more than one list.

/** A live relay, as a heartbeat reply lists it. */
export interface PeerRelay {
  url: string;
  addrs: string[];
}

/** One page of a list, in its order (by URL). */
export interface PeerPage {
  peers: PeerRelay[];
  /** The list goes on past the last peer of the page. */
  more: boolean;
}

/** What turns one version into another: relays new or with new addrs, and the URLs of those gone. */
export interface PeerDelta {
  changed: PeerRelay[];
  gone: string[];
}

/**
 * Versions are kept this long at least, two lease-socket beats and a little
 * more: a relay on its socket refreshes every 30 s, and one reading a list in
 * pages finds the version still there.
 */
export const PEER_VERSIONS_KEEP_MS = 65_000;
/** However old, the last this many versions are kept. */
export const PEER_VERSIONS_KEPT = 32;
/** However young, no more than this many (each costs a list of references to shared peers). */
export const PEER_VERSIONS_MAX = 256;

interface Kept {
  peers: PeerRelay[];
  /** When it was kept (or kept again). */
  at: number;
  /** URL → position, made when first needed. */
  index?: Map<string, number>;
}

const sameAddrs = (a: PeerRelay, b: PeerRelay) =>
  a === b || (a.addrs.length === b.addrs.length && a.addrs.every((addr, i) => addr === b.addrs[i]));

export class PeerVersions {
  /** Oldest first. */
  private kept = new Map<number, Kept>();
  /** The peers of the version kept last, by URL, to share unchanged ones with the next. */
  private latest = new Map<string, PeerRelay>();
  private deltas = new Map<string, PeerDelta>();

  /**
   * Keeps list `version` as of `now`, dropping versions older than
   * PEER_VERSIONS_KEEP_MS beyond the last PEER_VERSIONS_KEPT, and the oldest
   * past PEER_VERSIONS_MAX; returns the list as kept.
   */
  keep(version: number, peers: PeerRelay[], now = Date.now()): PeerRelay[] {
    const known = this.kept.get(version);
    let kept: Kept;
    if (known) {
      // Back to a version kept before: it is the newest again.
      this.kept.delete(version);
      kept = { ...known, at: now };
    } else {
      const shared = peers.map((p) => {
        const same = this.latest.get(p.url);
        return same && sameAddrs(same, p) ? same : p;
      });
      kept = { peers: shared, at: now };
    }
    this.kept.set(version, kept);
    this.latest = new Map(kept.peers.map((p) => [p.url, p]));
    for (const [old, { at }] of this.kept) {
      const tooMany = this.kept.size > PEER_VERSIONS_MAX;
      if (!tooMany && (this.kept.size <= PEER_VERSIONS_KEPT || now - at < PEER_VERSIONS_KEEP_MS)) break;
      this.kept.delete(old);
    }
    // Deltas from or to a dropped version are not asked for again.
    if (this.deltas.size > PEER_VERSIONS_MAX) this.deltas.clear();
    return kept.peers;
  }

  /** List `version` as kept (undefined: not kept). */
  list(version: number): PeerRelay[] | undefined {
    return this.kept.get(version)?.peers;
  }

  /** What turns version `from` into `to`, `self` left out; undefined when either is not kept. */
  delta(from: number, to: number, self: string): PeerDelta | undefined {
    const key = `${from}>${to}`;
    let delta = this.deltas.get(key);
    if (!delta) {
      const base = this.kept.get(from);
      const next = this.kept.get(to);
      if (!base || !next) return undefined;
      const before = indexOf(base);
      const after = indexOf(next);
      delta = {
        changed: next.peers.filter((p) => {
          const i = before.get(p.url);
          return i === undefined || !sameAddrs(base.peers[i], p);
        }),
        gone: base.peers.filter((p) => !after.has(p.url)).map((p) => p.url),
      };
      this.deltas.set(key, delta);
    }
    return { changed: delta.changed.filter((p) => p.url !== self), gone: delta.gone.filter((url) => url !== self) };
  }

  /**
   * Up to `size` peers of list `version` after the one with URL `after` (""
   * from the start), `self` left out; undefined when the version is not
   * kept, null when `after` is not in it.
   */
  page(version: number, after: string, self: string, size: number): PeerPage | undefined | null {
    const list = this.kept.get(version);
    if (!list) return undefined;
    let i = 0;
    if (after !== "") {
      const at = indexOf(list).get(after);
      if (at === undefined) return null;
      i = at + 1;
    }
    const { peers } = list;
    const page: PeerRelay[] = [];
    for (; i < peers.length && page.length < size; i++) {
      if (peers[i].url !== self) page.push(peers[i]);
    }
    while (i < peers.length && peers[i].url === self) i++;
    return { peers: page, more: i < peers.length };
  }
}

function indexOf(list: Kept): Map<string, number> {
  list.index ??= new Map(list.peers.map((p, i) => [p.url, i]));
  return list.index;
}

/** List `base` changed by `delta`, in URL order (the directory's, for URLs, which are ASCII). */
export function applyDelta(base: PeerRelay[], delta: PeerDelta): PeerRelay[] {
  const drop = new Set([...delta.gone, ...delta.changed.map((p) => p.url)]);
  return [...base.filter((p) => !drop.has(p.url)), ...delta.changed].sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
}
