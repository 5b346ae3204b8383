// ListRelays and ListScopes: pages of the DirectoryObject's lists. A relay's
// lease (expiry, liveness, epoch, scopes) is read from its own RelayObject,
// which is authoritative; the directory only knows which relays exist.
import { create } from "@bufbuild/protobuf";
import {
  ListRelaysResponseSchema,
  ListScopesResponseSchema,
  RelayRecordSchema,
  type ListRelaysRequest,
  type ListRelaysResponse,
  type ListScopesRequest,
  type ListScopesResponse,
} from "../gen/moqworker/v1/admin_pb.js";
import type { Env } from "../env.js";
import { listedScopeName, scopeFromObjectName } from "../objects/scope-name.js";
import { directoryStub, relayStub } from "../objects/stubs.js";
import { afterToken, decodeAfterToken, pageSize } from "./paging.js";

export const MAX_SCOPES_PAGE = 1000;
/** Each relay on a page costs a call to its object, so pages are smaller. */
export const MAX_RELAYS_PAGE = 200;

export async function listScopes(env: Env, req: ListScopesRequest): Promise<ListScopesResponse> {
  const limit = pageSize(req.pageSize, MAX_SCOPES_PAGE);
  const after = decodeAfterToken("scopes", req.pageToken);
  const { names, more } = await directoryStub(env).listScopes(limit, after);
  return create(ListScopesResponseSchema, {
    scopes: names,
    nextPageToken: more ? afterToken("scopes", names[names.length - 1]) : "",
  });
}

export async function listRelays(env: Env, req: ListRelaysRequest): Promise<ListRelaysResponse> {
  const limit = pageSize(req.pageSize, MAX_RELAYS_PAGE);
  const after = decodeAfterToken("relays", req.pageToken);
  const { relays, more } = await directoryStub(env).listRelays(limit, after);
  const records = await Promise.all(
    relays.map(async (r) => {
      const lease = await relayStub(env, r.url).view();
      if (!lease) return create(RelayRecordSchema, { url: r.url, epoch: r.epoch, alive: false });
      return create(RelayRecordSchema, {
        url: lease.url,
        epoch: lease.epoch,
        leaseExpiresAtMs: BigInt(lease.expiresAt),
        alive: lease.alive,
        scopes: lease.scopes.map((s) => listedScopeName(scopeFromObjectName(s))).sort(),
        addrs: lease.addrs,
        lastHeartbeatAtMs: lease.lastBeatAt === null ? undefined : BigInt(lease.lastBeatAt),
      });
    }),
  );
  return create(ListRelaysResponseSchema, {
    relays: records,
    nextPageToken: more ? afterToken("relays", relays[relays.length - 1].url) : "",
  });
}
