import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-plugin";

const bindings = {
  ADMIN_TOKEN: "test-admin-token",
  TOKEN_SECRET: "test-token-secret",
  ALLOW_UNSCOPED: "true",
  LEASE_TTL_MS: "60000",
};

type RateLimits = Record<string, { namespace_id: string; simple: { limit: number; period: 10 | 60 } }>;

const worker = (extra: Record<string, string> = {}, ratelimits?: RateLimits) =>
  cloudflareTest({
    wrangler: { configPath: "./wrangler.toml" },
    miniflare: { bindings: { ...bindings, ...extra }, ...(ratelimits ? { ratelimits } : {}) },
  });

/** Rate limits small enough to reach in a test (test/rate-limit/); wrangler.toml has the deployed ones. */
const tinyLimit = (namespace_id: string, limit: number) => ({ namespace_id, simple: { limit, period: 60 as const } });

// Tests run inside workerd with the real Worker and its SQLite Durable Objects.
// Three projects: the Worker with its default variables; the same Worker
// with other values (tiny quotas, previous secrets) that test/config/ needs
// to reach every limit and a rotation (SECURITY.md); and with rate limits
// small enough to reach (test/rate-limit/).
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        plugins: [worker()],
        test: { name: "worker", include: ["test/**/*.test.ts"], exclude: ["test/config/**", "test/rate-limit/**", "test/e2e/**"] },
      },
      {
        extends: true,
        plugins: [
          worker({
            MAX_NAMESPACES_PER_RELAY: "3",
            MAX_TRACKS_PER_RELAY: "3",
            MAX_SUBSCRIPTIONS_PER_RELAY: "3",
            MAX_LIST_TRACKS: "4",
            // Two branches of 2 sockets each (watch/branches.ts).
            MAX_WATCHERS_PER_SCOPE: "4",
            WATCH_BRANCHES: "2",
            // Peer lists of more than two relays come in pages (test/config/peer-pages.test.ts).
            PEER_PAGE_SIZE: "2",
            TOKEN_SECRET_PREVIOUS: "test-token-secret-previous",
            ADMIN_TOKEN_PREVIOUS: "test-admin-token-previous",
            // Every call re-reads the revocation list: a revocation served by another isolate shows at once.
            REVOCATION_REFRESH_MS: "0",
          }),
        ],
        test: { name: "config", include: ["test/config/**/*.test.ts"] },
      },
      {
        extends: true,
        plugins: [
          worker(
            { ADMIN_TOKEN_PREVIOUS: "test-admin-token-previous", RATE_LIMIT_PERIOD_SECONDS: "60" },
            {
              RELAY_RATE_LIMIT: tinyLimit("4711", 20),
              HEARTBEAT_RATE_LIMIT: tinyLimit("4712", 8),
              ADMIN_RATE_LIMIT: tinyLimit("4713", 40),
            },
          ),
        ],
        test: { name: "rate-limit", include: ["test/rate-limit/**/*.test.ts"] },
      },
    ],
    // Generous: CI shares 2 cores with cargo builds. Timeouts are not speed assertions.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
