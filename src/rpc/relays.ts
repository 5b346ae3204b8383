// ListRelays and ListScopes: pages of the DirectoryObject's lists, one call to
// it per page. RelayObjects note their lease, addresses and scopes there
// (objects/directory.ts), so listing costs no call per relay.
import { create } from "@bufbuild/protobuf";
import {
  ListRelaysResponseSchema,
  ListScopesResponseSchema,
  RelayRecordSchema,
  type ListRelaysRequest,
  type ListRelaysResponse,
  type ListScopesRequest,
  type ListScopesResponse,
  type RelayRecord,
} from "../gen/moqworker/v1/admin_pb.js";
import type { Env } from "../env.js";
import type { DirectoryRelay } from "../objects/directory.js";
import { listedScopeName, scopeFromObjectName } from "../objects/scope-name.js";
import { directoryStub } from "../objects/stubs.js";
import { afterToken, decodeAfterToken, pageSize } from "./paging.js";

export const MAX_SCOPES_PAGE = 1000;
export const MAX_RELAYS_PAGE = 1000;

export async function listScopes(env: Env, req: ListScopesRequest): Promise<ListScopesResponse> {
  const limit = pageSize(req.pageSize, MAX_SCOPES_PAGE);
  const after = decodeAfterToken("scopes", req.pageToken);
  const { names, more, total } = await directoryStub(env).listScopes(limit, after);
  return create(ListScopesResponseSchema, {
    scopes: names,
    nextPageToken: more ? afterToken("scopes", names[names.length - 1]) : "",
    total,
  });
}

export async function listRelays(env: Env, req: ListRelaysRequest): Promise<ListRelaysResponse> {
  const limit = pageSize(req.pageSize, MAX_RELAYS_PAGE);
  const after = decodeAfterToken("relays", req.pageToken);
  const { relays, more, total } = await directoryStub(env).listRelays(limit, after);
  return create(ListRelaysResponseSchema, {
    relays: relays.map(relayRecord),
    nextPageToken: more ? afterToken("relays", relays[relays.length - 1].url) : "",
    total,
  });
}

/** A directory entry as ListRelays and GetNetwork answer it. */
export function relayRecord(r: DirectoryRelay): RelayRecord {
  return create(RelayRecordSchema, {
    url: r.url,
    epoch: r.epoch,
    leaseExpiresAtMs: BigInt(r.expiresAt),
    alive: r.alive,
    scopes: r.scopes.map((s) => listedScopeName(scopeFromObjectName(s))).sort(),
    scopeCount: r.scopeCount,
    addrs: r.addrs,
    moqtVersions: r.versions,
    lastHeartbeatAtMs: r.lastBeatAt === null ? undefined : BigInt(r.lastBeatAt),
  });
}
