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
} from "../gen/moqworker/v1/admin_pb.js";
import type { Env } from "../env.js";
import { directoryStub } from "../objects/directory.js";
import { scopeFromObjectName } from "../objects/names.js";
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
    relays: relays.map((r) =>
      create(RelayRecordSchema, {
        url: r.url,
        epoch: r.epoch,
        leaseExpiresAtMs: BigInt(r.expiresAt),
        alive: r.alive,
        // "" stands for the unscoped space: scope names are never empty.
        scopes: r.scopes.map((s) => scopeFromObjectName(s) ?? "").sort(),
        scopeCount: r.scopeCount,
        addrs: r.addrs,
        lastHeartbeatAtMs: r.lastBeatAt === null ? undefined : BigInt(r.lastBeatAt),
      }),
    ),
    nextPageToken: more ? afterToken("relays", relays[relays.length - 1].url) : "",
    total,
  });
}
