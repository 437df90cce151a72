import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * Runs the conformance suite alone: `npx vitest run --config conformance/vitest.config.ts`.
 * Everything runs in one worker, file by file, test by test, in declaration order.
 */
export default defineConfig({
  test: {
    root: fileURLToPath(new URL("..", import.meta.url)),
    include: ["conformance/**/*.test.ts"],
    fileParallelism: false,
    maxWorkers: 1,
    sequence: { concurrent: false, shuffle: false },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    retry: 0,
  },
});
