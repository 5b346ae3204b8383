// The table of variables (src/settings.ts): what each reader accepts, and that
// a bad value is one error naming the variable, logged once, with the default
// applied. The readers' defaults are checked against the documented ones in
// test/limits-defaults.test.ts, lifetimes.test.ts and overload.test.ts.
import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:test";
import { flagSetting, integerSetting, SETTINGS, secretSetting, settingProblems } from "../src/settings.js";

afterEach(() => vi.restoreAllMocks());

describe("settings", () => {
  it("this Worker's variables (wrangler.toml and vitest.config.ts) are all accepted", () => {
    expect(settingProblems(env)).toEqual([]);
  });

  it("each default is within its own range", () => {
    for (const [name, s] of Object.entries(SETTINGS)) {
      if (s.kind === "integer") expect(s.default >= s.min && s.default <= s.max, name).toBe(true);
    }
  });

  it("a bad value is one error naming the variable, logged once per isolate; its default applies", () => {
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    const bad = { MAX_LIST_TRACKS: "lots-of-them" };
    expect(integerSetting(bad, "MAX_LIST_TRACKS")).toBe(1000);
    expect(integerSetting(bad, "MAX_LIST_TRACKS")).toBe(1000);
    expect(log).toHaveBeenCalledTimes(1);
    expect(log.mock.calls[0][0]).toBe('setting MAX_LIST_TRACKS="lots-of-them" is not a whole number, 1 or more: the default 1000 applies');
    expect(settingProblems({ ...bad, LEASE_TTL_MS: "500", ALLOW_UNSCOPED: "yes" })).toEqual([
      'setting ALLOW_UNSCOPED="yes" is not true or false: the default false applies',
      'setting LEASE_TTL_MS="500" is not a whole number from 1000 to 3600000: the default 10000 applies',
      'setting MAX_LIST_TRACKS="lots-of-them" is not a whole number, 1 or more: the default 1000 applies',
    ]);
  });

  it("unset or blank is the default, silently", () => {
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    for (const v of [undefined, "", "  "]) {
      expect(integerSetting({ MAX_INFLIGHT_PER_SCOPE: v }, "MAX_INFLIGHT_PER_SCOPE"), String(v)).toBe(32);
      expect(flagSetting({ ALLOW_UNSCOPED: v }, "ALLOW_UNSCOPED"), String(v)).toBe(false);
    }
    expect(secretSetting({ TOKEN_SECRET: "" }, "TOKEN_SECRET")).toBeUndefined();
    expect(log).not.toHaveBeenCalled();
  });

  it("flags are exactly true or false", () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect(flagSetting({ ALLOW_UNSCOPED: "true" }, "ALLOW_UNSCOPED")).toBe(true);
    expect(flagSetting({ ALLOW_UNSCOPED: "false" }, "ALLOW_UNSCOPED")).toBe(false);
    for (const v of ["TRUE", "1", " true"]) expect(flagSetting({ ALLOW_UNSCOPED: v }, "ALLOW_UNSCOPED"), v).toBe(false);
  });
});
