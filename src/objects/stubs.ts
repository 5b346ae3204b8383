// The one place that turns a name into a Durable Object stub. Object names are
// persistent: the same name must always reach the same object.
import type { Env } from "../env.js";
import { type Scope, scopeObjectName } from "./scope-name.js";

/** The ScopeObject of a scope or of the unscoped space. */
export const scopeStub = (env: Env, scope: Scope) => env.SCOPES.get(env.SCOPES.idFromName(scopeObjectName(scope)));

/** The RelayObject of a relay, by its URL. */
export const relayStub = (env: Env, url: string) => env.RELAYS.get(env.RELAYS.idFromName(url));

/** The PathObject of a normalised connection path. */
export const pathStub = (env: Env, path: string) => env.PATHS.get(env.PATHS.idFromName(path));

/** The one DirectoryObject. */
export const directoryStub = (env: Env) => env.DIRECTORY.get(env.DIRECTORY.idFromName("directory"));
