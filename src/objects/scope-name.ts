// "A scope, or the unscoped space": one type in code, and its encoding at each
// boundary. Scope names are never empty and never contain control characters
// (model/validate.ts), so no encoding below can confuse a scope with the
// unscoped space, or two scopes with each other.

/** A scope by its name, or the unscoped space (null). */
export type Scope = string | null;

export const UNSCOPED = null;

/**
 * The Durable Object name of the scope's ScopeObject. Persistent (it picks the
 * object, and RelayObjects store it in their scope lists): never change it.
 */
export function scopeObjectName(scope: Scope): string {
  return scope === null ? "unscoped" : `scope:${scope}`;
}

export function scopeFromObjectName(name: string): Scope {
  return name === "unscoped" ? null : name.slice("scope:".length);
}

/** In the admin lists (ListScopes, ListRelays, the DirectoryObject): "" is the unscoped space. */
export function listedScopeName(scope: Scope): string {
  return scope ?? "";
}

/** From the admin lists' form (listedScopeName): "" is the unscoped space. */
export function scopeFromListedName(name: string): Scope {
  return name === "" ? null : name;
}

/** From a request's optional scope field: absent is the unscoped space. */
export function scopeFromField(scope: string | undefined): Scope {
  return scope ?? null;
}

/** For messages: "the unscoped space" or the name in quotes. */
export function describeScope(scope: Scope): string {
  return scope === null ? "the unscoped space" : `'${scope}'`;
}
