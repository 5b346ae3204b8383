// Every variable the Worker reads, in one table: its name, default, accepted
// values and meaning. Code reads the variables through this module;
// env.ts types them from the table, wrangler.toml [vars] deploys the defaults,
// and the README's table of variables is made from this one
// (scripts/settings-table.mjs, which `npm run lint` runs to check both).
//
// Unset or empty, a variable takes its default. A value the table does not
// accept also takes the default (a typo in a variable must not take the
// control plane down), and is reported as one error naming the variable, the
// value and what it accepts, once per isolate, in the Worker's log (wrangler
// tail): the Worker checks every variable on an isolate's first request, and
// each read checks its own (Durable Objects read variables too).
//
// No runtime imports: Node loads this file as it is for the README check.

interface Described {
  /** One line for the README's table (Markdown). */
  meaning: string;
}

/** A whole number from `min` to `max`. */
export interface IntegerSetting extends Described {
  kind: "integer";
  default: number;
  min: number;
  max: number;
}

/** `true` or `false`. */
export interface FlagSetting extends Described {
  kind: "flag";
  default: boolean;
}

/** A secret (`wrangler secret put`): any non-empty string; unset by default. */
export interface SecretSetting extends Described {
  kind: "secret";
}

export type Setting = IntegerSetting | FlagSetting | SecretSetting;

/** No upper bound but JavaScript's exact integers. */
const NO_MAX = Number.MAX_SAFE_INTEGER;

export const SETTINGS = {
  ADMIN_TOKEN: {
    kind: "secret",
    meaning: "bearer token of the AdminService and `/metrics`; unset, admin calls are refused",
  },
  ADMIN_TOKEN_PREVIOUS: {
    kind: "secret",
    meaning: "the admin token `ADMIN_TOKEN` replaced, still accepted until it is removed (SECURITY.md, rotation)",
  },
  TOKEN_SECRET: {
    kind: "secret",
    meaning: "HMAC key of relay tokens and relay-link paths; unset, relay calls are refused",
  },
  TOKEN_SECRET_PREVIOUS: {
    kind: "secret",
    meaning: "the key `TOKEN_SECRET` replaced: its tokens and links still verify until it is removed (SECURITY.md, rotation)",
  },
  ALLOW_UNSCOPED: {
    kind: "flag",
    default: false,
    meaning: "`true` lets relays call without a scope (the unscoped space)",
  },
  LEASE_TTL_MS: {
    kind: "integer",
    default: 10_000,
    min: 1_000,
    max: 3_600_000,
    meaning: "relay lease, in ms; relays beat every third of it (docs/lifetimes.md)",
  },
  MAX_NAMESPACES_PER_RELAY: {
    kind: "integer",
    default: 10_000,
    min: 1,
    max: NO_MAX,
    meaning: "namespaces one relay may hold in one scope",
  },
  MAX_TRACKS_PER_RELAY: {
    kind: "integer",
    default: 10_000,
    min: 1,
    max: NO_MAX,
    meaning: "tracks one relay may hold in one scope",
  },
  MAX_SUBSCRIPTIONS_PER_RELAY: {
    kind: "integer",
    default: 10_000,
    min: 1,
    max: NO_MAX,
    meaning: "namespace subscriptions, and apart from them lingering track subscriptions, one relay may hold in one scope",
  },
  MAX_LIST_TRACKS: {
    kind: "integer",
    default: 1_000,
    min: 1,
    max: NO_MAX,
    meaning: "most tracks ListTracks returns; a namespace with more is RESOURCE_EXHAUSTED",
  },
  MAX_WATCHERS_PER_SCOPE: {
    kind: "integer",
    default: 100_000,
    min: 1,
    max: NO_MAX,
    meaning:
      "watch sockets (`GET /v1/watch`) open at once on one scope, as a share per branch: a branch holding `MAX_WATCHERS_PER_SCOPE / WATCH_BRANCHES` (rounded up, at most 32,000) refuses one more RESOURCE_EXHAUSTED",
  },
  LEASE_CLOCKS: {
    kind: "integer",
    default: 1,
    min: 1,
    max: 256,
    meaning:
      "timers shared by relays on their lease sockets, a relay's by a hash of its URL; each fires about once per TTL whatever it watches, and checks up to 1,000 relays per alarm (docs/lifetimes.md)",
  },
  PEER_SHARDS: {
    kind: "integer",
    default: 16,
    min: 1,
    max: 1024,
    meaning:
      "copies of the directory's peer list that heartbeats read, a relay's by a hash of its URL; the directory answers each at most once a second (docs/lifetimes.md)",
  },
  PEER_PAGE_SIZE: {
    kind: "integer",
    default: 1000,
    min: 1,
    max: 10_000,
    meaning:
      "peers in one heartbeat answer or ListPeers page, for relays that take the list in parts (changes larger than this come as pages)",
  },
  WATCH_BRANCHES: {
    kind: "integer",
    default: 8,
    min: 1,
    max: 1024,
    meaning:
      "objects holding each scope's watch sockets, a relay's by a hash of its URL; a change costs the scope one call per branch in use, whatever the number of watchers (docs/performance.md)",
  },
  MAX_INFLIGHT_PER_SCOPE: {
    kind: "integer",
    default: 32,
    min: 0,
    max: NO_MAX,
    meaning:
      "calls one isolate lets wait on one scope's object; past it UNAVAILABLE with `Retry-After` (docs/reliability.md); 0 = no shedding",
  },
  RATE_LIMIT_PERIOD_SECONDS: {
    kind: "integer",
    default: 10,
    min: 1,
    max: NO_MAX,
    meaning: "the `Retry-After` of a rate-limit refusal, in s: the `[[ratelimits]]` period (SECURITY.md, rate limits)",
  },
  REVOCATION_REFRESH_MS: {
    kind: "integer",
    default: 10_000,
    min: 0,
    max: 999_999_999,
    meaning: "how stale an isolate's copy of the revoked relay tokens may be, in ms; 0 = re-read before every call",
  },
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;
type NameOf<K extends Setting["kind"]> = { [N in SettingName]: (typeof SETTINGS)[N]["kind"] extends K ? N : never }[SettingName];
export type IntegerName = NameOf<"integer">;
export type FlagName = NameOf<"flag">;
export type SecretName = NameOf<"secret">;

/** The variables as the runtime hands them over: strings, any of them unset. */
export type Variables = { [N in SettingName]?: string };

/** What a setting accepts, in words (its error message and the README's table). */
export function accepted(setting: Setting): string {
  switch (setting.kind) {
    case "integer":
      return setting.max === NO_MAX ? `a whole number, ${setting.min} or more` : `a whole number from ${setting.min} to ${setting.max}`;
    case "flag":
      return "true or false";
    case "secret":
      return "any string";
  }
}

/** The one error a bad value makes: the variable, the value, what it accepts and what applies instead. */
function problem(name: SettingName, raw: string): string {
  const setting: Setting = SETTINGS[name];
  const instead = setting.kind === "secret" ? "" : `: the default ${setting.default} applies`;
  return `setting ${name}=${JSON.stringify(raw)} is not ${accepted(setting)}${instead}`;
}

/** Problems this isolate has logged already. */
const reported = new Set<string>();

function report(message: string): void {
  if (reported.has(message)) return;
  reported.add(message);
  console.error(message);
}

function badValue<T>(name: SettingName, raw: string, fallback: T): T {
  report(problem(name, raw));
  return fallback;
}

/** The value set for a variable, or undefined when it is unset or blank. */
function given(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value;
}

/** Whether a setting accepts a (non-blank) value. */
function accepts(setting: Setting, raw: string): boolean {
  switch (setting.kind) {
    case "integer": {
      const n = Number(raw);
      return Number.isSafeInteger(n) && n >= setting.min && n <= setting.max;
    }
    case "flag":
      return raw === "true" || raw === "false";
    case "secret":
      return true;
  }
}

/** An integer setting's value; unset or not accepted, its default. */
export function integerSetting<N extends IntegerName>(env: { readonly [K in N]?: string }, name: N): number {
  const setting: IntegerSetting = SETTINGS[name];
  const raw = given(env[name]);
  if (raw === undefined) return setting.default;
  return accepts(setting, raw) ? Number(raw) : badValue(name, raw, setting.default);
}

/** A flag setting's value; unset or not `true`/`false`, its default. */
export function flagSetting<N extends FlagName>(env: { readonly [K in N]?: string }, name: N): boolean {
  const setting: FlagSetting = SETTINGS[name];
  const raw = given(env[name]);
  if (raw === undefined) return setting.default;
  return accepts(setting, raw) ? raw === "true" : badValue(name, raw, setting.default);
}

/** A secret, or undefined when it is unset or empty. */
export function secretSetting<N extends SecretName>(env: { readonly [K in N]?: string }, name: N): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}

/** Every bad value among the variables, one message each (nothing logged). */
export function settingProblems(env: Variables): string[] {
  const problems: string[] = [];
  for (const [name, setting] of Object.entries(SETTINGS) as [SettingName, Setting][]) {
    const raw = given(env[name]);
    if (raw !== undefined && !accepts(setting, raw)) problems.push(problem(name, raw));
  }
  return problems;
}

/** Logs every bad value among the variables, each once per isolate: the Worker calls it on an isolate's first request. */
export function reportSettingProblems(env: Variables): void {
  for (const message of settingProblems(env)) report(message);
}
