// The CLI's token commands: issue a token for a scope, show a scope's token
// policy, rotate or remove the Worker's keys, set an operator's own keys.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { Option } from "commander";
import { TokenGrant } from "../src/gen/moqworker/v1/admin_pb.js";
import { type ScopeAuth, ScopeAuthSchema } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { adminClient, asJson, type GlobalOptions, print, UsageError, wholeNumber } from "./common.js";
import { NONE, table } from "./format.js";

const utf8 = new TextEncoder();
const repeated = (v: string, prev: string[] = []) => [...prev, v];
const when = (ms: bigint | undefined) => (ms === undefined ? NONE : new Date(Number(ms)).toISOString());

/** The operator's part of a policy, as PutScopeConfig takes it back (the Worker's keys are its own). */
export function operatorPart(auth: ScopeAuth | undefined): ScopeAuth | undefined {
  return auth && { ...auth, keys: auth.keys.filter((k) => !k.workerHeld) };
}

function policyText(scope: string, auth: ScopeAuth | undefined): string {
  if (!auth) return `scope ${scope}: no token policy (sessions need no token)`;
  const head =
    `scope ${scope}: tokens required; issuers ${auth.issuers.join(", ") || "any"}; audiences ${auth.audiences.join(", ") || "any"}; ` +
    `clock skew ${auth.clockSkewSeconds ?? 60} s; relays re-read it every ${auth.ttlSeconds ?? 5} s`;
  const rows = auth.keys.map((k) => [
    k.kid,
    k.workerHeld ? "worker" : "operator",
    k.signing ? "yes" : "no",
    when(k.addedAtMs),
    when(k.retiresAtMs),
  ]);
  return `${head}\n${table(["KID", "HELD BY", "SIGNING", "ADDED", "RETIRES"], rows)}`;
}

export function addTokenCommands(token: Command, scope: Command, globals: (cmd: Command) => GlobalOptions): void {
  token
    .command("issue")
    .description("a token for publishers or viewers of a scope, signed by the Worker (prints TYPE:BASE64URL, as clients take it)")
    .argument("<scope>", "a scope whose policy has a Worker key (`scope rotate-key`)")
    .option("--publish", "may publish (PUBLISH_NAMESPACE, PUBLISH)")
    .option("--subscribe", "may watch (SUBSCRIBE, FETCH, TRACK_STATUS, SUBSCRIBE_NAMESPACE)")
    .option("--namespace <a/b>", "only this namespace and those under it (default: any)")
    .option("--track <name>", "only this track")
    .addOption(new Option("--ttl <seconds>", "lifetime (default 600, at most 604500)").argParser(wholeNumber("seconds", 1)))
    .option("--issuer <iss>", "one of the policy's issuers")
    .option("--audience <aud>", "one of the policy's audiences")
    .action(async (name: string, o: Record<string, string | boolean | number | undefined>, cmd: Command) => {
      const opts = globals(cmd);
      const grants = [...(o.publish ? [TokenGrant.PUBLISH] : []), ...(o.subscribe ? [TokenGrant.SUBSCRIBE] : [])];
      if (grants.length === 0) throw new UsageError("token issue: give --publish, --subscribe or both");
      const ns = typeof o.namespace === "string" && o.namespace !== "" ? o.namespace.split("/") : [];
      const res = await adminClient(opts).issueToken({
        scope: name,
        grants,
        namespacePrefix: { fields: ns.map((f) => utf8.encode(f)) },
        track: o.track as string | undefined,
        ttlSeconds: o.ttl as number | undefined,
        issuer: o.issuer as string | undefined,
        audience: o.audience as string | undefined,
      });
      print(
        opts,
        () => res.token,
        () => ({ token: res.token, kid: res.kid, expiresAtMs: String(res.expiresAtMs) }),
      );
      if (!opts.json) process.stderr.write(`signed with ${res.kid}; expires ${when(res.expiresAtMs)}\n`);
    });

  scope
    .command("keys")
    .description("a scope's token policy: its keys (never a private one), issuers, audiences")
    .argument("<scope>", "scope name")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd);
      const { config } = await adminClient(opts).describeScope({ scope: name, pageSize: 1 });
      print(
        opts,
        () => policyText(name, config?.auth),
        () => ({ auth: config?.auth ? asJson(ScopeAuthSchema, config.auth) : null }),
      );
    });

  scope
    .command("rotate-key")
    .description(
      "make a new Worker signing key: it joins the policy now, signs once relays have it, the old one retires after its last token",
    )
    .argument("<scope>", "scope name (its policy is turned on if it had none)")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd);
      const res = await adminClient(opts).rotateScopeKey({ scope: name });
      print(
        opts,
        () =>
          `scope ${name}: new key ${res.key?.kid}, signing from ${when(res.signsFromMs)}${res.replacesKid ? `, replacing ${res.replacesKid}` : ""}`,
        () => ({ kid: res.key?.kid, signsFromMs: String(res.signsFromMs), replacesKid: res.replacesKid ?? null }),
      );
    });

  scope
    .command("remove-key")
    .description("take a Worker key out of the policy at once (relays refuse its tokens within the policy's TTL)")
    .argument("<scope>", "scope name")
    .argument("<kid>", "the key's id (`scope keys`)")
    .action(async (name: string, kid: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd);
      await adminClient(opts).removeScopeKey({ scope: name, kid });
      print(
        opts,
        () => `scope ${name}: key ${kid} removed`,
        () => ({}),
      );
    });

  scope
    .command("policy")
    .description(
      "replace the operator's part of a scope's token policy (its own keys, issuers, audiences, skew, TTL: give them all); keeps the Worker's keys and the rest of the config",
    )
    .argument("<scope>", "scope name")
    .addOption(new Option("--key <kid=pem-file>", "an ES256 public key (SPKI PEM file), repeatable").argParser(repeated))
    .addOption(new Option("--issuer <iss>", "an accepted issuer, repeatable").argParser(repeated))
    .addOption(new Option("--audience <aud>", "an accepted audience, repeatable").argParser(repeated))
    .addOption(
      new Option("--clock-skew <seconds>", "tolerance for exp and nbf (default 60, at most 300)").argParser(wholeNumber("seconds", 0)),
    )
    .addOption(new Option("--policy-ttl <seconds>", "how often relays re-read the policy (default 5)").argParser(wholeNumber("seconds", 1)))
    .option("--off", "turn token enforcement off for the scope")
    .action(async (name: string, o: Record<string, string[] | number | boolean | undefined>, cmd: Command) => {
      const opts = globals(cmd);
      const admin = adminClient(opts);
      const { config } = await admin.describeScope({ scope: name, pageSize: 1 }).catch(() => ({ config: undefined }));
      const keys = ((o.key as string[] | undefined) ?? []).map((spec) => {
        const at = spec.indexOf("=");
        if (at < 1) throw new UsageError(`--key: '${spec}' is not KID=PEM-FILE`);
        return { kid: spec.slice(0, at), pem: readFileSync(spec.slice(at + 1), "utf8") };
      });
      const auth = o.off
        ? undefined
        : {
            keys,
            issuers: (o.issuer as string[] | undefined) ?? [],
            audiences: (o.audience as string[] | undefined) ?? [],
            clockSkewSeconds: o.clockSkew as number | undefined,
            ttlSeconds: o.policyTtl as number | undefined,
          };
      const keep = {
        originFallback: config?.originFallback,
        lingeringSubscribe: config?.lingeringSubscribe ?? false,
        rendezvousTimeoutMs: config?.rendezvousTimeoutMs,
      };
      await admin.putScopeConfig({ scope: name, config: { ...keep, auth } });
      const after = (await admin.describeScope({ scope: name, pageSize: 1 })).config?.auth;
      print(
        opts,
        () => policyText(name, after),
        () => ({ auth: after ? asJson(ScopeAuthSchema, after) : null }),
      );
    });
}
