// DescribeScope: everything a scope holds, one page of each list at a time.
import { create } from "@bufbuild/protobuf";
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
import { ScopeConfigSchema, type Permissions } from "../gen/moqworker/v1/coordinator_pb.js";
import type { Env } from "../env.js";
import { checkScopeName, invalid } from "../model/validate.js";
import { namespaceMsg, relayMsg, scopeStub } from "./convert.js";

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

/** Page tokens are opaque to callers; inside they are a row offset. */
const encodeToken = (offset: number) => btoa(JSON.stringify({ o: offset }));
function decodeToken(token: string): number {
  if (token === "") return 0;
  try {
    const { o } = JSON.parse(atob(token)) as { o: unknown };
    if (typeof o === "number" && Number.isInteger(o) && o >= 0) return o;
  } catch {
    // fall through
  }
  throw invalid("page_token", "is not a token from a previous response");
}

export function pageSize(requested: number): number {
  if (requested > MAX_PAGE) throw invalid("page_size", `must be at most ${MAX_PAGE}`);
  return requested === 0 ? DEFAULT_PAGE : requested;
}

export async function describeScope(env: Env, req: DescribeScopeRequest): Promise<DescribeScopeResponse> {
  const scope = checkScopeName("scope", req.scope);
  const limit = pageSize(req.pageSize);
  const offset = decodeToken(req.pageToken);
  const d = await scopeStub(env, scope).describe(limit, offset);
  const ms = (t: number) => BigInt(t);
  return create(DescribeScopeResponseSchema, {
    config: create(ScopeConfigSchema, d.config),
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
    nextPageToken: d.more ? encodeToken(offset + limit) : "",
  });
}
