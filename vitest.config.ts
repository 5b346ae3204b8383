import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-plugin";

const bindings = {
  ADMIN_TOKEN: "test-admin-token",
  TOKEN_SECRET: "test-token-secret",
  ALLOW_UNSCOPED: "true",
  LEASE_TTL_MS: "60000",
};

const worker = (extra: Record<string, string> = {}) =>
  cloudflareTest({ wrangler: { configPath: "./wrangler.toml" }, miniflare: { bindings: { ...bindings, ...extra } } });

// Tests run inside workerd with the real Worker and its SQLite Durable Objects.
// Two projects: the Worker with its default variables, and the same Worker
// with other values (tiny quotas, a previous token secret) that test/config/
// needs to reach every limit and a secret rotation (SECURITY.md).
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        plugins: [worker()],
        test: { name: "worker", include: ["test/**/*.test.ts"], exclude: ["test/config/**", "test/e2e/**"] },
      },
      {
        extends: true,
        plugins: [
          worker({
            MAX_NAMESPACES_PER_RELAY: "3",
            MAX_TRACKS_PER_RELAY: "3",
            MAX_SUBSCRIPTIONS_PER_RELAY: "3",
            MAX_LIST_TRACKS: "4",
            MAX_WATCHERS_PER_SCOPE: "2",
            TOKEN_SECRET_PREVIOUS: "test-token-secret-previous",
          }),
        ],
        test: { name: "config", include: ["test/config/**/*.test.ts"] },
      },
    ],
    // Generous: CI shares 2 cores with cargo builds. Timeouts are not speed assertions.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
