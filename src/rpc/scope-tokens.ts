// AdminService's token calls: the Worker's signing keys of a scope
// (RotateScopeKey, RemoveScopeKey) and the tokens it issues with them
// (IssueToken). Keys are made and tokens signed here, in the Worker; the
// ScopeObject stores the sealed keys and decides which one signs.
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { type AdminService, TokenGrant } from "../gen/moqworker/v1/admin_pb.js";
import { AuthLimit } from "../gen/moqworker/v1/coordinator_pb.js";
import { MoqtAction, signCat } from "../auth/cat.js";
import { tokenSecrets } from "../auth/relay-token.js";
import { makeScopeKey, unsealScopeKey } from "../auth/scope-keys.js";
import { checkKid } from "../model/auth-policy.js";
import { toBase64Url } from "../model/base64url.js";
import { checkNamespace, checkScopeName, checkTrack, invalid } from "../model/validate.js";
import { scopeObjectName } from "../objects/scope-name.js";
import { scopeStub } from "../objects/stubs.js";
import { envOf, unwrap } from "./convert.js";
import { authKeyMsg } from "./scope-config.js";

/** An issued token's lifetime when the request names none: short, since a session outlives its token and cannot be revoked (SECURITY.md). */
export const DEFAULT_TOKEN_TTL_SECONDS = 600;

/** CAT token type (draft-ietf-moq-c4m), the `1:` of a client's --auth-token. */
const CAT_TOKEN_TYPE = 1;

/** The MoQT actions behind each grant; every token may open a session. */
const GRANT_ACTIONS: Record<number, number[]> = {
  [TokenGrant.PUBLISH]: [MoqtAction.PublishNamespace, MoqtAction.Publish],
  [TokenGrant.SUBSCRIBE]: [MoqtAction.Subscribe, MoqtAction.Fetch, MoqtAction.TrackStatus, MoqtAction.SubscribeNamespace],
};

function secretsOf(ctx: HandlerContext): string[] {
  const secrets = tokenSecrets(envOf(ctx));
  if (secrets.length === 0) {
    throw new ConnectError(
      "TOKEN_SECRET is not set (wrangler secret put TOKEN_SECRET): scope keys are sealed with it",
      Code.FailedPrecondition,
    );
  }
  return secrets;
}

export const scopeTokenHandlers: Pick<ServiceImpl<typeof AdminService>, "rotateScopeKey" | "removeScopeKey" | "issueToken"> = {
  async rotateScopeKey(req, ctx) {
    const scope = checkScopeName("scope", req.scope);
    const [secret] = secretsOf(ctx);
    const key = await makeScopeKey(secret, scopeObjectName(scope));
    const added = unwrap(await scopeStub(envOf(ctx), scope).addSigningKey(scope, key));
    return { key: authKeyMsg(added.key), signsFromMs: BigInt(added.signsFrom), replacesKid: added.replaces };
  },

  async removeScopeKey(req, ctx) {
    const scope = checkScopeName("scope", req.scope);
    unwrap(await scopeStub(envOf(ctx), scope).removeSigningKey(checkKid("kid", req.kid)));
    return {};
  },

  async issueToken(req, ctx) {
    const scope = checkScopeName("scope", req.scope);
    const grants = [...new Set(req.grants)];
    if (grants.length === 0) throw invalid("grants", "must name at least one of TOKEN_GRANT_PUBLISH, TOKEN_GRANT_SUBSCRIBE");
    const unknown = grants.find((g) => GRANT_ACTIONS[g] === undefined);
    if (unknown !== undefined) throw invalid("grants", `${unknown} is not a grant (TOKEN_GRANT_PUBLISH or TOKEN_GRANT_SUBSCRIBE)`);
    const prefix = checkNamespace("namespace_prefix", req.namespacePrefix, { allowEmpty: true });
    const track = req.track === undefined ? undefined : checkTrack("track", req.track);
    const ttl = req.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    if (ttl < 1 || ttl > AuthLimit.MAX_TOKEN_SECONDS) {
      throw invalid("ttl_seconds", `must be between 1 and ${AuthLimit.MAX_TOKEN_SECONDS} (the relay's 7 days less the largest clock skew)`);
    }
    const secrets = secretsOf(ctx);
    const issuedAt = Math.floor(Date.now() / 1000);
    const expiresAt = issuedAt + ttl;
    const key = unwrap(await scopeStub(envOf(ctx), scope).signingKey(expiresAt, { issuer: req.issuer, audience: req.audience }));
    const { issuer, audience } = key;
    const signer = await unsealScopeKey(secrets, scopeObjectName(scope), key.kid, key.sealed);
    const bytes = await signCat(signer, key.kid, {
      issuer,
      audience,
      issuedAt,
      expiresAt,
      id: crypto.getRandomValues(new Uint8Array(16)),
      grant: { actions: [MoqtAction.ClientSetup, ...grants.flatMap((g) => GRANT_ACTIONS[g])], namespacePrefix: prefix, track },
    });
    return { token: `${CAT_TOKEN_TYPE}:${toBase64Url(bytes)}`, kid: key.kid, expiresAtMs: BigInt(expiresAt * 1000) };
  },
};
