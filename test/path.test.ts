// Connection path normalisation, rule by rule (docs/architecture.md "Connection paths", moq-rs PR #145).
import { describe, expect, it } from "vitest";
import { normalizeConnectionPath } from "../src/model/path.js";

const none = { kind: "none" };
const path = (p: string) => ({ kind: "path", path: p });
const invalid = expect.objectContaining({ kind: "invalid" });

describe("normalizeConnectionPath", () => {
  it.each([
    ["absent", undefined, none],
    ["empty", "", none],
    ["root", "/", none],
    ["only slashes", "///", none],
    ["simple", "/a", path("/a")],
    ["nested", "/provider/acme/ingest", path("/provider/acme/ingest")],
    ["trailing slash trimmed", "/a/", path("/a")],
    ["several trailing slashes trimmed", "/a/b///", path("/a/b")],
    ["empty segment", "/a//b", invalid],
    ["leading double slash", "//a", invalid],
    ["dot segment", "/./a", invalid],
    ["dot-dot segment", "/a/..", invalid],
    ["dot-dot in middle", "/a/../b", invalid],
    ["dots inside a name are fine", "/a.b/..c/d..", path("/a.b/..c/d..")],
    ["percent-encoded slash", "/a%2Fb", invalid],
    ["percent-encoded dots", "/%2E%2E", invalid],
    ["lone percent", "/100%", invalid],
    ["no leading slash", "a/b", invalid],
    ["relative dot", "./a", invalid],
    ["unicode segments", "/caf\u00e9/\u6f14\u594f", path("/caf\u00e9/\u6f14\u594f")],
    ["lone surrogate (not UTF-8)", "/a\ud800", invalid],
  ])("%s: %j", (_name, input, expected) => {
    expect(normalizeConnectionPath(input)).toEqual(expected);
  });

  it("accepts exactly 1024 bytes and rejects 1025", () => {
    const exact = "/" + "a".repeat(1023);
    expect(normalizeConnectionPath(exact)).toEqual(path(exact));
    expect(normalizeConnectionPath(exact + "a")).toEqual(invalid);
    // The limit is in UTF-8 bytes, not characters: 512 two-byte characters are 1025 bytes with the slash.
    const wide = "/" + "\u00e9".repeat(512);
    expect(normalizeConnectionPath(wide)).toEqual(invalid);
    expect(normalizeConnectionPath("/" + "\u00e9".repeat(511) + "a")).toEqual(path("/" + "\u00e9".repeat(511) + "a"));
  });

  it("checks length before trimming: 1025 bytes of slashes is invalid, not 'no path'", () => {
    expect(normalizeConnectionPath("/".repeat(1025))).toEqual(invalid);
    expect(normalizeConnectionPath("/".repeat(1024))).toEqual(none);
  });

  it("says why a path is invalid", () => {
    expect(normalizeConnectionPath("/a//b")).toEqual({ kind: "invalid", reason: "path segment 2 is empty" });
    expect(normalizeConnectionPath("a")).toEqual({ kind: "invalid", reason: "path must start with '/'" });
    expect(normalizeConnectionPath("/a/%41")).toEqual({
      kind: "invalid",
      reason: "path segment 2 contains '%' (percent-encoding is not allowed)",
    });
  });
});
