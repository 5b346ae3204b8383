// PeerShardObject: a copy of the directory's live-peer list, for the relays
// that hash to it (one of PEER_SHARDS). Heartbeats that refresh their peer
// list ask their shard, never the directory, so no one object takes a
// share of every relay's heartbeats: the directory answers each shard at
// most once per PEER_COPY_MAX_AGE_MS, whatever the number of relays.
//
// A relay that takes the list in parts (HeartbeatRequest.peers_in_parts)
// gets the changes since the version it holds, or the list a page at a time
// (ListPeers): the shard keeps its recent versions for that (model/peer-versions.ts).
// The copies are in memory only; an evicted shard asks again, and a relay
// whose version it no longer has takes the whole list.
import { DurableObject } from "cloudflare:workers";
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { bucketOf } from "../model/hash.js";
import { integerSetting } from "../settings.js";
import { bounded, OBJECT_CALL_TIMEOUT_MS } from "./bounded.js";
import { applyDelta, type PeerPage, type PeerRelay, PeerVersions } from "../model/peer-versions.js";
import type { PeerList, PeerListUpdate } from "./directory.js";
import { directoryStub } from "./stubs.js";
import { fail, ok, type Outcome } from "./types.js";

/** How old a copy a shard answers with (fresh asks take one fetched after they arrived). */
export const PEER_COPY_MAX_AGE_MS = 1000;

/** What a relay asks its shard for. */
export interface PeerAsk {
  /** The caller, left out of every answer. */
  self: string;
  /** The version the relay holds (0: none). */
  known: number;
  /** A copy asked for after this call arrived. */
  fresh: boolean;
  /** The relay takes changes and pages (HeartbeatRequest.peers_in_parts). */
  inParts: boolean;
}

/**
 * A shard's answer: nothing new ("unchanged"), the changes since `known`
 * ("delta": `peers` new or changed, `gone` left), or the list ("list": its
 * first page when in parts, `more` when it goes on).
 */
export interface PeerAnswer {
  kind: "unchanged" | "delta" | "list";
  version: number;
  truncated: boolean;
  peers: PeerRelay[];
  gone: string[];
  more: boolean;
}

/** The shard (its object name) of a relay. */
export function peerShardOf(env: Env, relay: string): string {
  return `peers-${bucketOf(relay, integerSetting(env, "PEER_SHARDS"))}`;
}

interface Copy extends PeerList {
  /** When the directory was asked for it. */
  askedAt: number;
}

export class PeerShardObject extends DurableObject<Env> {
  private copy: Copy | null = null;
  private asking: Promise<Copy> | null = null;
  private askingSince = 0;
  private versions = new PeerVersions();

  /** The live relays, from a copy at most PEER_COPY_MAX_AGE_MS old, or (fresh) one asked for after this call arrived. */
  async peers(ask: PeerAsk): Promise<PeerAnswer> {
    const arrived = Date.now();
    const list = await this.copySince(ask.fresh ? arrived : arrived - PEER_COPY_MAX_AGE_MS);
    const answer = { version: list.version, truncated: list.truncated, peers: [], gone: [], more: false };
    if (list.version === ask.known) return { ...answer, kind: "unchanged" };
    if (!ask.inParts) return { ...answer, kind: "list", peers: list.peers.filter((p) => p.url !== ask.self) };
    const size = integerSetting(this.env, "PEER_PAGE_SIZE");
    const delta = this.versions.delta(ask.known, list.version, ask.self);
    if (delta && delta.changed.length + delta.gone.length <= size) {
      return { ...answer, kind: "delta", peers: delta.changed, gone: delta.gone };
    }
    // Kept, so the relay can page through it (ListPeers).
    const page = this.versions.page(list.version, "", ask.self, size);
    return { ...answer, kind: "list", ...page };
  }

  /** The page of list `version` after `after`, the caller left out (ListPeers). */
  page(version: number, after: string, self: string): Outcome<PeerPage> {
    if (version === 0) return fail(Code.InvalidArgument, "peers_version: 0 names no list");
    const page = this.versions.page(version, after, self, integerSetting(this.env, "PEER_PAGE_SIZE"));
    if (page === undefined) {
      return fail(
        Code.Aborted,
        `peers_version: list ${version} is not kept any more (it changed since); the next Heartbeat begins the current one`,
      );
    }
    if (page === null) return fail(Code.InvalidArgument, `after: '${after}' is not in list ${version}`);
    return ok(page);
  }

  /** The directory's list, asked as changes since version `known` (which this shard keeps). */
  private async fromDirectory(known: number): Promise<PeerList> {
    const ask = (v: number): Promise<PeerListUpdate> =>
      bounded(directoryStub(this.env).peerListSince(v), OBJECT_CALL_TIMEOUT_MS, "directory");
    const update = await ask(known);
    const base = this.versions.list(known);
    if (update.kind === "list" || !base) {
      const whole = update.kind === "list" ? update : await ask(0);
      return { version: whole.version, truncated: whole.truncated, peers: whole.peers };
    }
    const peers = update.kind === "unchanged" ? base : applyDelta(base, { changed: update.peers, gone: update.gone });
    return { version: update.version, truncated: update.truncated, peers };
  }

  /** A copy asked for at or after `since`; concurrent callers share one ask. */
  private async copySince(since: number): Promise<Copy> {
    for (;;) {
      if (this.copy && this.copy.askedAt >= since) return this.copy;
      if (this.asking && this.askingSince >= since) return this.asking;
      if (this.asking) {
        await this.asking.catch(() => undefined);
        continue;
      }
      const askedAt = Date.now();
      const asking = this.fromDirectory(this.copy?.version ?? 0).then((list) => {
        const copy = { ...list, peers: this.versions.keep(list.version, list.peers), askedAt };
        if (!this.copy || this.copy.askedAt <= askedAt) this.copy = copy;
        return copy;
      });
      this.asking = asking;
      this.askingSince = askedAt;
      asking
        .finally(() => {
          if (this.asking === asking) this.asking = null;
        })
        .catch(() => undefined);
      return asking;
    }
  }
}
