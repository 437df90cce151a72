import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type KagamiConfig, loadConfigFile } from "../src/config/config.ts";
import { repoRoot } from "./helpers/kagami.ts";

const dir = join(repoRoot, "examples");
// Configurations; the Grafana dashboard is checked against a live scrape in test/ops/metrics.test.ts.
const files = readdirSync(dir).filter((f) => f.endsWith(".json") && f !== "grafana-dashboard.json");

/** What an anonymous caller may change, as "pattern: action" lines; empty when nothing. */
function anonymousWrites(config: KagamiConfig): string[] {
  const acl = config.http.accessControl;
  if (!acl) return config.http.auth ? [] : ["every repository: no accounts and no accessControl"];
  return Object.entries(acl.repositories ?? {}).flatMap(([pattern, policy]) =>
    (policy.anonymousPolicy ?? []).filter((a) => a !== "read").map((a) => `${pattern}: ${a}`),
  );
}

describe("examples", () => {
  it.each(files)("%s is a valid configuration", (file) => {
    expect(() => loadConfigFile(join(dir, file))).not.toThrow();
  });

  it.each(files)("%s lets nobody anonymous push or delete if it listens on every interface", (file) => {
    const { config } = loadConfigFile(join(dir, file));
    if (!["0.0.0.0", "::", ""].includes(config.http.address)) return;
    expect(anonymousWrites(config)).toEqual([]);
  });
});
