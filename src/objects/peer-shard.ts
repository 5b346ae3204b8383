// PeerShardObject: a copy of the directory's live-peer list, for the relays
// that hash to it (one of PEER_SHARDS). Heartbeats that refresh their peer
// list ask their shard, never the directory, so no one object takes a
// share of every relay's heartbeats: the directory answers each shard at
// most once per PEER_COPY_MAX_AGE_MS, whatever the number of relays. The
// copy is in memory only; an evicted shard asks again.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";
import { bucketOf } from "../model/hash.js";
import { integerSetting } from "../settings.js";
import { bounded, OBJECT_CALL_TIMEOUT_MS } from "./bounded.js";
import type { PeerList } from "./directory.js";
import { directoryStub } from "./stubs.js";

/** How old a copy a shard answers with (fresh asks take one fetched after they arrived). */
export const PEER_COPY_MAX_AGE_MS = 1000;

/** A shard's answer: the list, or null peers when it is the version the caller holds. */
export interface PeerAnswer {
  version: number;
  peers: PeerList["peers"] | null;
  truncated: boolean;
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

  /**
   * The live relays, from a copy at most PEER_COPY_MAX_AGE_MS old, or (fresh)
   * one asked for after this call arrived; null peers when `known` is its version.
   */
  async peers(known: number, fresh: boolean): Promise<PeerAnswer> {
    const arrived = Date.now();
    const list = await this.copySince(fresh ? arrived : arrived - PEER_COPY_MAX_AGE_MS);
    return { version: list.version, peers: list.version === known ? null : list.peers, truncated: list.truncated };
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
      const asking = bounded(directoryStub(this.env).livePeers(), OBJECT_CALL_TIMEOUT_MS, "directory").then((list) => {
        const copy = { ...list, askedAt };
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
