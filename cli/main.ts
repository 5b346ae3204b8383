// `moq-worker`: the operator CLI. Each command is one or a few AdminService
// calls through the generated client; output is a table for people or the
// canonical proto3 JSON (--json) for scripts. Any failure is one line on
// stderr and exit status 1.

import { Code, ConnectError } from "@connectrpc/connect";
import { Command, CommanderError, Option } from "commander";
import {
  type DescribeScopeResponse,
  DescribeScopeResponseSchema,
  ListRelaysResponseSchema,
  ListScopesResponseSchema,
} from "../src/gen/moqworker/v1/admin_pb.js";
import { type Namespace, Permissions, type RelayInfo } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { age, NONE, namespaceText, relative, scopeLabel, table } from "./format.js";
import {
  adminClient,
  allPages,
  asJson,
  DEFAULT_URL,
  DEV_ADMIN_TOKEN,
  type GlobalOptions,
  pageSizeOption,
  print,
  UsageError,
  wholeNumber,
} from "./common.js";
import { addTokenCommands, operatorPart } from "./tokens.js";

export { DEFAULT_URL, DEV_ADMIN_TOKEN };

const PERMISSION_TEXT: Record<number, string> = {
  [Permissions.READ_WRITE]: "read-write",
  [Permissions.READ_ONLY]: "read-only",
};

function describeText(scope: string | undefined, d: DescribeScopeResponse): string {
  const now = Date.now();
  const c = d.config;
  const section = (title: string, head: string[], rows: string[][]) =>
    `\n${title} (${rows.length})\n${rows.length === 0 ? "  none" : table(head, rows).replace(/^/gm, "  ")}`;
  /** A row a relay holds: what (namespace, then `what`), which relay, since when. */
  const held = (ns: Namespace | undefined, relay: RelayInfo | undefined, at: bigint, ...what: string[]) => [
    namespaceText(ns),
    ...what,
    relay?.url ?? NONE,
    age(at, now),
  ];
  return [
    `scope               ${scope === undefined ? "(unscoped)" : scope}`,
    `origin fallback     ${c?.originFallback ?? "-"}`,
    `lingering subscribe ${c?.lingeringSubscribe ? "yes" : "no"}`,
    `rendezvous timeout  ${c?.rendezvousTimeoutMs === undefined ? "-" : `${c.rendezvousTimeoutMs} ms`}`,
    `watch sockets       ${d.watchers}`,
    ...(
      [
        ["paths", ["PATH", "PERMISSIONS"], d.paths.map((p) => [p.path, PERMISSION_TEXT[p.permissions] ?? String(p.permissions)])],
        ["namespaces", ["NAMESPACE", "RELAY", "AGE"], d.namespaces.map((n) => held(n.namespace, n.relay, n.registeredAtMs))],
        ["tracks", ["NAMESPACE", "TRACK", "RELAY", "AGE"], d.tracks.map((t) => held(t.namespace, t.relay, t.registeredAtMs, t.name))],
        [
          "namespace subscriptions",
          ["PREFIX", "RELAY", "AGE"],
          d.namespaceSubscriptions.map((s) => held(s.prefix, s.relay, s.createdAtMs)),
        ],
        [
          "track subscriptions",
          ["NAMESPACE", "TRACK", "RELAY", "AGE", "EXPIRES"],
          d.trackSubscriptions.map((s) => [
            ...held(s.namespace, s.relay, s.createdAtMs, s.track),
            s.expiresAtMs === undefined ? "lingers" : relative(s.expiresAtMs, now),
          ]),
        ],
      ] as const
    ).map(([title, head, rows]) => section(title, [...head], rows)),
  ].join("\n");
}

export function buildProgram(): Command {
  const program = new Command("moq-worker")
    .description("Operate a moq-worker coordinator: relay tokens, scopes, connection paths, relays.")
    .addOption(new Option("--url <url>", "the Worker's URL").env("MOQ_WORKER_URL").default(DEFAULT_URL))
    .addOption(
      new Option("--token <token>", "admin token")
        .env("MOQ_WORKER_ADMIN_TOKEN")
        .default(DEV_ADMIN_TOKEN, `${DEV_ADMIN_TOKEN}, the local dev Worker's`),
    )
    .option("--json", "print proto3 JSON (as the Connect API returns it) instead of tables")
    .showSuggestionAfterError()
    .exitOverride();

  const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions;

  const token = program.command("token").description("relay credentials");
  token
    .command("create")
    .description("mint the bearer token that binds a relay edge to its URL")
    .argument("<relay-url>", "the relay's public https URL")
    .addOption(new Option("--ttl <seconds>", "lifetime (default: does not expire)").argParser(wholeNumber("seconds", 1)))
    .addOption(
      new Option("--scope <scope>", "limit the token to this scope (repeatable; default: any scope)").argParser(
        (v: string, prev: string[] = []) => [...prev, v],
      ),
    )
    .option("--read-only", "the token may look up and subscribe but never register namespaces or tracks")
    .action(async (relayUrl: string, o: { ttl?: number; scope?: string[]; readOnly?: boolean }, cmd: Command) => {
      const opts = globals(cmd);
      const res = await adminClient(opts).createRelayToken({
        relayUrl,
        ttlSeconds: o.ttl,
        scopes: o.scope ?? [],
        readOnly: o.readOnly ?? false,
      });
      print(
        opts,
        () => res.token,
        () => ({ token: res.token, ...(res.expiresAtMs === undefined ? {} : { expiresAtMs: String(res.expiresAtMs) }) }),
      );
      if (!opts.json && res.expiresAtMs !== undefined) {
        process.stderr.write(`expires ${new Date(Number(res.expiresAtMs)).toISOString()}\n`);
      }
    });

  token
    .command("revoke")
    .description("revoke every token of a relay minted until now and remove its rows from every scope (mint a new one to readmit it)")
    .argument("<relay-url>", "the relay's public https URL, as its tokens were minted for")
    .action(async (relayUrl: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd);
      const res = await adminClient(opts).revokeRelayToken({ relayUrl });
      const revokedBefore = new Date(Number(res.revokedBeforeMs)).toISOString();
      print(
        opts,
        () =>
          `revoked tokens made up to ${revokedBefore}; ${res.rowsRemoved} rows removed` +
          (res.purgePending ? " (some scopes unreachable: purged within the lease TTL)" : ""),
        () => ({ revokedBeforeMs: String(res.revokedBeforeMs), rowsRemoved: String(res.rowsRemoved), purgePending: res.purgePending }),
      );
    });

  const scope = program.command("scope").description("scopes: configuration, token policy and contents");
  addTokenCommands(token, scope, globals);
  scope
    .command("set")
    .description("set a scope's configuration (replaces it but for its token policy, which `scope policy` sets; unset flags mean defaults)")
    .argument("<scope>", "scope name")
    .option("--origin-fallback <url>", "relay to ask when no relay has a namespace")
    .option("--lingering", "keep track subscribers waiting for a publisher (rendezvous)")
    .addOption(new Option("--rendezvous-timeout <ms>", "how long a lingering subscriber waits").argParser(wholeNumber("milliseconds", 1)))
    .action(async (name: string, o: { originFallback?: string; lingering?: boolean; rendezvousTimeout?: number }, cmd: Command) => {
      const opts = globals(cmd);
      const admin = adminClient(opts);
      // PutScopeConfig replaces the whole config: keep the token policy (NOT_FOUND: a new scope, none).
      const current = await admin.describeScope({ scope: name, pageSize: 1 }).catch((e) => {
        if (ConnectError.from(e).code === Code.NotFound) return undefined;
        throw e;
      });
      const auth = operatorPart(current?.config?.auth);
      const config = { originFallback: o.originFallback, lingeringSubscribe: !!o.lingering, rendezvousTimeoutMs: o.rendezvousTimeout };
      await admin.putScopeConfig({ scope: name, config: { ...config, auth } });
      print(
        opts,
        () =>
          `scope ${name}: origin fallback ${config.originFallback ?? "-"}, lingering subscribe ${config.lingeringSubscribe ? "yes" : "no"}, ` +
          `rendezvous timeout ${config.rendezvousTimeoutMs === undefined ? "-" : `${config.rendezvousTimeoutMs} ms`}`,
        () => ({}),
      );
    });
  scope
    .command("show")
    .description("a scope's configuration, paths, namespaces, tracks and subscriptions (every page)")
    .argument("[scope]", "scope name")
    .option("--unscoped", "show the unscoped space instead of a named scope")
    .addOption(pageSizeOption(1000))
    .action(async (name: string | undefined, o: { unscoped?: boolean; pageSize: number }, cmd: Command) => {
      const opts = globals(cmd);
      if ((name === undefined) === !o.unscoped) throw new UsageError("scope show: give a scope name or --unscoped (not both)");
      const admin = adminClient(opts);
      const d = await allPages(
        (pageToken) => admin.describeScope({ scope: name, pageSize: o.pageSize, pageToken }),
        (into, page) => {
          into.paths.push(...page.paths);
          into.namespaces.push(...page.namespaces);
          into.tracks.push(...page.tracks);
          into.namespaceSubscriptions.push(...page.namespaceSubscriptions);
          into.trackSubscriptions.push(...page.trackSubscriptions);
        },
      );
      print(
        opts,
        () => describeText(name, d),
        () => asJson(DescribeScopeResponseSchema, d),
      );
    });
  const listScopes = async (o: { pageSize: number }, cmd: Command) => {
    const opts = globals(cmd);
    const admin = adminClient(opts);
    const res = await allPages(
      (pageToken) => admin.listScopes({ pageSize: o.pageSize, pageToken }),
      (into, page) => into.scopes.push(...page.scopes),
    );
    print(
      opts,
      () =>
        res.scopes.length === 0
          ? "no scopes"
          : table(
              ["SCOPE"],
              res.scopes.map((s) => [scopeLabel(s)]),
            ),
      () => asJson(ListScopesResponseSchema, res),
    );
  };
  scope.command("ls").description("every scope ever configured or written to").addOption(pageSizeOption(1000)).action(listScopes);
  program.command("scopes").description("same as `scope ls`").addOption(pageSizeOption(1000)).action(listScopes);

  const path = program.command("path").description("connection paths (the URL path a session connects with) → scopes");
  path
    .command("set")
    .description("map a connection path to a scope")
    .argument("<path>", "connection path, e.g. /tenant/publish")
    .argument("<scope>", "scope name")
    .addOption(new Option("--read-only", "sessions on this path may only subscribe").conflicts("readWrite"))
    .addOption(new Option("--read-write", "sessions on this path may publish and subscribe"))
    .action(async (p: string, name: string, o: { readOnly?: boolean; readWrite?: boolean }, cmd: Command) => {
      const opts = globals(cmd);
      if (!o.readOnly && !o.readWrite) throw new UsageError("path set: give --read-only or --read-write");
      const permissions = o.readOnly ? Permissions.READ_ONLY : Permissions.READ_WRITE;
      const res = await adminClient(opts).putPath({ path: p, scope: name, permissions });
      print(
        opts,
        () => `path ${res.path} -> scope ${name} (${PERMISSION_TEXT[permissions]})`,
        () => ({ path: res.path }),
      );
    });
  path
    .command("rm")
    .description("remove a connection path's mapping")
    .argument("<path>", "connection path")
    .action(async (p: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd);
      await adminClient(opts).deletePath({ path: p });
      print(
        opts,
        () => `path ${p} removed`,
        () => ({}),
      );
    });

  program
    .command("relays")
    .description("relays with their MoQT versions, epoch, lease, liveness and the scopes they wrote to")
    .addOption(pageSizeOption(200))
    .action(async (o: { pageSize: number }, cmd: Command) => {
      const opts = globals(cmd);
      const admin = adminClient(opts);
      const res = await allPages(
        (pageToken) => admin.listRelays({ pageSize: o.pageSize, pageToken }),
        (into, page) => into.relays.push(...page.relays),
      );
      const now = Date.now();
      print(
        opts,
        () =>
          res.relays.length === 0
            ? "no relays"
            : table(
                ["URL", "ALIVE", "MOQT", "EPOCH", "LEASE", "HEARTBEAT", "ADDRS", "SCOPES"],
                res.relays.map((r) => [
                  r.url,
                  r.alive ? "yes" : "no",
                  r.moqtVersions.join(",") || "-",
                  r.epoch || "-",
                  relative(r.leaseExpiresAtMs, now),
                  r.lastHeartbeatAtMs === undefined ? "-" : `${age(r.lastHeartbeatAtMs, now)} ago`,
                  r.addrs.join(",") || "-",
                  r.scopes.map(scopeLabel).join(",") || "-",
                ]),
              ),
        () => asJson(ListRelaysResponseSchema, res),
      );
    });

  return program;
}

/** One line saying what went wrong, for any failure. */
export function errorLine(err: unknown, url: string): string {
  if (err instanceof UsageError) return err.message;
  const connect = ConnectError.from(err);
  // fetch() failures (no server, DNS, TLS) arrive as Code.Unknown wrapping a chain of causes.
  let cause: unknown = connect.cause ?? (err as { cause?: unknown }).cause;
  while ((cause as { cause?: unknown } | undefined)?.cause) cause = (cause as { cause: unknown }).cause;
  if (!(err instanceof ConnectError) || (connect.code === Code.Unknown && cause instanceof Error)) {
    const why = cause instanceof Error ? ((cause as { code?: string }).code ?? cause.message) : connect.rawMessage;
    return `cannot reach ${url} (${why}); is the Worker running (npm start) and --url right?`;
  }
  const code = Code[connect.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
  const hint =
    connect.code === Code.Unauthenticated || connect.code === Code.PermissionDenied ? " (check --token / MOQ_WORKER_ADMIN_TOKEN)" : "";
  return `${code}: ${connect.rawMessage}${hint}`;
}

/** Runs the CLI; resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    // commander has printed its own usage errors and help already.
    if (err instanceof CommanderError) return err.exitCode;
    const opts = program.opts() as GlobalOptions;
    process.stderr.write(`moq-worker: ${errorLine(err, opts.url)}\n`);
    return 1;
  }
}
