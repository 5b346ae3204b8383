import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-plugin";

// Tests run inside workerd with the real Worker and its SQLite Durable Objects.
export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          ADMIN_TOKEN: "test-admin-token",
          TOKEN_SECRET: "test-token-secret",
          ALLOW_UNSCOPED: "true",
          LEASE_TTL_MS: "60000",
        },
      },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    // Generous: CI shares 2 cores with cargo builds. Timeouts are not speed assertions.
    testTimeout: 60_000,
  },
});
