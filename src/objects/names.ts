// Durable Object naming. Scope names may not contain control characters
// (model/validate.ts), so the unscoped object can never collide with a scope.
export function scopeObjectName(scope: string | null): string {
  return scope === null ? "unscoped" : `scope:${scope}`;
}

export function scopeFromObjectName(name: string): string | null {
  return name === "unscoped" ? null : name.slice("scope:".length);
}
