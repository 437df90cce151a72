import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real peers (skopeo, podman, distribution) are heavy; two cores do not like many at once.
    maxWorkers: 2,
    reporters: ["default", "./test/support/plain-summary.ts"],
  },
});
