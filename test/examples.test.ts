import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfigFile } from "../src/config/config.ts";
import { repoRoot } from "./helpers/kagami.ts";

const dir = join(repoRoot, "examples");

describe("examples", () => {
  it.each(readdirSync(dir).filter((f) => f.endsWith(".json")))("%s is a valid configuration", (file) => {
    expect(() => loadConfigFile(join(dir, file))).not.toThrow();
  });
});
