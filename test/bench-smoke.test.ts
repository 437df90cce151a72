/**
 * The benchmark harness must not rot: its smoke run (every workload at toy sizes, a few seconds
 * each) has to finish and write a sane table and raw numbers. Nothing here asserts a time or a
 * ratio; speed is judged by `npm run bench`, never by `npm test`.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import type { RunResults } from "../bench/lib/results.ts";
import { repoRoot } from "./helpers/kagami.ts";
import { hasTool } from "./helpers/tools.ts";

const run = promisify(execFile);
const peers = ["docker-registry", "wrk", "ab", "nginx", "curl"].every((t) => hasTool(t));
const out = mkdtempSync(join(tmpdir(), "kagami-bench-smoke-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("benchmark harness", () => {
  it.skipIf(!peers)(
    "runs every workload against Kagami and distribution and writes the table and the JSON",
    async () => {
      // npm test builds dist/ before vitest runs, so the harness need not build again.
      await run("npm", ["run", "--silent", "bench:smoke", "--", "--out", out, "--no-build"], {
        cwd: repoRoot,
        timeout: 110_000,
        maxBuffer: 16 << 20,
      });
      const md = readFileSync(join(out, "benchmarks.md"), "utf8");
      const results = JSON.parse(readFileSync(join(out, "benchmarks.json"), "utf8")) as RunResults;

      expect(results.mode).toBe("smoke");
      expect(md).toContain("<!-- bench:results:start -->");
      expect(md).toMatch(/\| workload \| Kagami \| distribution \|/);
      const groups = new Set(results.workloads.map((w) => w.group));
      for (const g of ["manifests", "blob GET", "mixed", "mirror", "listing", "push"])
        expect(groups).toContain(g);

      for (const w of results.workloads) {
        // distribution 2.8's pull-through cache now and then answers 500 under concurrent pulls
        // (seen in CI); that is the peer's fault, not the harness's, and must not fail our tests.
        const peerFault = w.group === "mirror" && w.status !== "ok" && /^distribution:/.test(w.note ?? "");
        if (!peerFault) {
          expect({ id: w.id, status: w.status, note: w.note }).toEqual({
            id: w.id,
            status: "ok",
            note: undefined,
          });
        }
        expect(md).toContain(w.title);
        const primary = w.metrics.find((m) => m.table === "primary")!;
        for (const target of ["kagami", "distribution"]) {
          if (w.missing?.[target]) continue;
          if (peerFault && target === "distribution") continue;
          const samples = w.samples.filter((s) => s.target === target);
          if (!peerFault) expect(samples.length, `${w.id}: samples of ${target}`).toBeGreaterThan(0);
          for (const s of samples) {
            expect(s.errors, `${w.id} ${target}: ${s.errorDetail}`).toBe(0);
            expect(Number.isFinite(s.values[primary.key]), `${w.id} ${target} ${primary.key}`).toBe(true);
            expect(s.values[primary.key]!, `${w.id} ${target} ${primary.key}`).toBeGreaterThan(0);
          }
        }
      }
    },
    120_000,
  );
});
