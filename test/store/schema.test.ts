import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LocalRegistry } from "../../src/registry/local.ts";
import { SchemaTooNewError, schemaVersion } from "../../src/store/metadata.ts";
import { kagamiBin, repoRoot } from "../helpers/kagami.ts";

const run = promisify(execFile);
const digest = `sha256:${"2".repeat(64)}`;

describe("metadata schema versions", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-schema-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function dbWith(sql: string, userVersion = 0): Promise<string> {
    await mkdir(join(dir, "data"), { recursive: true });
    const db = new Database(join(dir, "data", "kagami.db"));
    db.exec(sql);
    db.pragma(`user_version = ${userVersion}`);
    db.close();
    return join(dir, "data");
  }

  it("migrates a database of the unversioned schema at start and keeps its content", async () => {
    const sql = await readFile(join(repoRoot, "test/fixtures/metadata-unversioned.sql"), "utf8");
    const root = await dbWith(sql);
    const reg = await LocalRegistry.open(root);
    try {
      expect(reg.meta.db.pragma("user_version", { simple: true })).toBe(schemaVersion);
      expect(await reg.listTags("old/app")).toEqual(["v1"]);
      expect((await reg.headManifest("old/app", "v1"))?.digest).toBe(digest);
      // The push time of what was there is its creation time; it was never pulled as far as we know.
      const row = reg.meta.db
        .prepare("SELECT pushed_at, pulled_at, mirrored FROM manifests WHERE digest = ?")
        .get(digest);
      expect(row).toEqual({ pushed_at: 1700000000000, pulled_at: null, mirrored: 0 });
    } finally {
      reg.close();
    }
    // Opening again is a no-op: the migration is not repeated.
    const again = await LocalRegistry.open(root);
    expect(again.meta.db.pragma("user_version", { simple: true })).toBe(schemaVersion);
    again.close();
  });

  it("refuses a database written by a newer Kagami, naming both versions", async () => {
    const root = await dbWith("CREATE TABLE future (x INTEGER);", schemaVersion + 3);
    const err = await LocalRegistry.open(root).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaTooNewError);
    expect((err as Error).message).toContain(`schema version ${schemaVersion + 3}`);
    expect((err as Error).message).toContain(`versions up to ${schemaVersion}`);

    const config = join(dir, "config.json");
    await writeFile(
      config,
      JSON.stringify({ storage: { rootDirectory: root }, http: { address: "127.0.0.1", port: "0" } }),
    );
    const out = await run(process.execPath, [kagamiBin, "serve", "--config", config]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((out as { code: number }).code).toBe(1);
    expect((out as { stderr: string }).stderr).toMatch(/newer Kagami.*restore the backup/s);
    // Nothing was changed: the newer version still finds its own schema.
    const db = new Database(join(root, "kagami.db"));
    expect(db.pragma("user_version", { simple: true })).toBe(schemaVersion + 3);
    db.close();
  });
});
