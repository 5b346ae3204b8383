// DescribeScope: everything a scope holds, one page of each list at a time.
// The page token carries one keyset cursor per list that has more rows.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  DescribeScopeResponseSchema,
  NamespaceRecordSchema,
  NamespaceSubscriptionRecordSchema,
  PathEntrySchema,
  TrackRecordSchema,
  TrackSubscriptionRecordSchema,
  type DescribeScopeRequest,
  type DescribeScopeResponse,
} from "../gen/moqworker/v1/admin_pb.js";
import type { Permissions } from "../gen/moqworker/v1/coordinator_pb.js";
import { scopeConfigMsg } from "./scope-config.js";
import type { Env } from "../env.js";
import { checkScopeName } from "../model/validate.js";
import { DESCRIBE_LISTS, FIRST_PAGE, type DescribeCursor, type DescribeList } from "../objects/scope-describe.js";
import { fromBase64Url, toBase64Url } from "../model/base64url.js";
import { decodeToken, encodeToken, pageSize } from "./paging.js";
import { describeScope as describeScopeName, scopeFromField, UNSCOPED } from "../objects/scope-name.js";
import { scopeStub } from "../objects/stubs.js";
import { namespaceMsg, relayMsg } from "./convert.js";

export const MAX_DESCRIBE_PAGE = 1000;

/** In the token, blob key columns are base64url strings; text columns are as they are. */
function encodeCursor(cursor: DescribeCursor): string {
  const out: Record<string, string[]> = {};
  for (const [list, key] of Object.entries(cursor) as [DescribeList, SqlStorageValue[] | "start"][]) {
    if (key === "start") continue;
    out[list] = key.map((v) => (v instanceof ArrayBuffer ? toBase64Url(new Uint8Array(v)) : String(v)));
  }
  return encodeToken(out);
}

function decodeCursor(token: string): DescribeCursor {
  return (
    decodeToken(token, (value) => {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
      const cursor: DescribeCursor = {};
      for (const [list, key] of Object.entries(value)) {
        const spec = DESCRIBE_LISTS[list as DescribeList] as (typeof DESCRIBE_LISTS)[DescribeList] | undefined;
        if (!spec || !Array.isArray(key) || key.length !== spec.key.length) return undefined;
        if (!key.every((v) => typeof v === "string")) return undefined;
        const position = key.map((v: string, i) => (spec.blob[i] ? fromBase64Url(v)?.slice().buffer : v));
        if (position.some((v) => v === undefined)) return undefined;
        cursor[list as DescribeList] = position as SqlStorageValue[];
      }
      // A token always names at least one list: the last page has none.
      return Object.keys(cursor).length > 0 ? cursor : undefined;
    }) ?? FIRST_PAGE
  );
}

export async function describeScope(env: Env, req: DescribeScopeRequest): Promise<DescribeScopeResponse> {
  // Absent = the unscoped space, as in the coordinator calls.
  const field = scopeFromField(req.scope);
  const scope = field === UNSCOPED ? UNSCOPED : checkScopeName("scope", field);
  const limit = pageSize(req.pageSize, MAX_DESCRIBE_PAGE);
  const cursor = decodeCursor(req.pageToken);
  const d = await scopeStub(env, scope).describe(limit, cursor);
  if (d === null) {
    throw new ConnectError(`scope: ${describeScopeName(scope)} has never been configured or written to`, Code.NotFound);
  }
  const ms = (t: number) => BigInt(t);
  return create(DescribeScopeResponseSchema, {
    config: scopeConfigMsg(d.config),
    paths: d.paths.map((p) => create(PathEntrySchema, { path: p.path, permissions: p.permissions as Permissions })),
    namespaces: d.namespaces.map((n) =>
      create(NamespaceRecordSchema, { namespace: namespaceMsg(n.fields), relay: relayMsg(n.relay), registeredAtMs: ms(n.createdAt) }),
    ),
    tracks: d.tracks.map((t) =>
      create(TrackRecordSchema, {
        namespace: namespaceMsg(t.fields),
        name: t.name,
        relay: relayMsg(t.relay),
        registeredAtMs: ms(t.createdAt),
      }),
    ),
    namespaceSubscriptions: d.namespaceSubscriptions.map((s) =>
      create(NamespaceSubscriptionRecordSchema, { prefix: namespaceMsg(s.fields), relay: relayMsg(s.relay), createdAtMs: ms(s.createdAt) }),
    ),
    trackSubscriptions: d.trackSubscriptions.map((s) =>
      create(TrackSubscriptionRecordSchema, {
        namespace: namespaceMsg(s.fields),
        track: s.name,
        relay: relayMsg(s.relay),
        createdAtMs: ms(s.createdAt),
        expiresAtMs: s.expiresAt === undefined ? undefined : ms(s.expiresAt),
      }),
    ),
    nextPageToken: Object.keys(d.next).length > 0 ? encodeCursor(d.next) : "",
    watchers: d.watchers,
  });
}
