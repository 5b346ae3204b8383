// The Scope type's encodings (objects/scope-name.ts): each one tells every scope
// and the unscoped space apart, and decodes back to what was encoded.
import { describe, expect, it } from "vitest";
import {
  describeScope,
  listedScopeName,
  type Scope,
  scopeFromField,
  scopeFromObjectName,
  scopeObjectName,
  UNSCOPED,
} from "../src/objects/scope-name.js";

// Names that look like another encoding's output must still stay themselves.
const SCOPES: Scope[] = [UNSCOPED, "unscoped", "scope:unscoped", "scope:", "a", "Caf\u00e9", " "];

describe("Scope encodings", () => {
  it("object names are distinct and decode back", () => {
    const names = SCOPES.map(scopeObjectName);
    expect(new Set(names).size).toBe(SCOPES.length);
    expect(names.map(scopeFromObjectName)).toEqual(SCOPES);
    // Persistent: these pick the Durable Objects that hold existing data.
    expect([scopeObjectName(UNSCOPED), scopeObjectName("a")]).toEqual(["unscoped", "scope:a"]);
  });

  it("the listed name is empty for the unscoped space only (scope names are never empty)", () => {
    expect(SCOPES.map(listedScopeName)).toEqual(["", "unscoped", "scope:unscoped", "scope:", "a", "Caf\u00e9", " "]);
  });

  it("an absent request field is the unscoped space; messages name which", () => {
    expect([scopeFromField(undefined), scopeFromField("a")]).toEqual([UNSCOPED, "a"]);
    expect([describeScope(UNSCOPED), describeScope("unscoped")]).toEqual(["the unscoped space", "'unscoped'"]);
  });
});
