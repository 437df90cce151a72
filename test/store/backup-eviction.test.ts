/**
 * `kagami backup` while the cache quota evicts: the quota deletes an evicted image's blobs at once,
 * so an eviction between the metadata snapshot and the blob copy must not leave a backup whose
 * database names blobs it does not hold.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LocalRegistry } from "../../src/registry/local.ts";
import { backupStore } from "../../src/store/backup.ts";
import { applyQuota, planQuota } from "../../src/store/quota.ts";
import { putImage, TestClock } from "./helpers.ts";

const t0 = Date.UTC(2026, 0, 31);

describe("backup beside a cache quota eviction", () => {
  let dir: string;
  let reg: LocalRegistry;
  const clock = new TestClock(t0);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-backup-evict-"));
    reg = await LocalRegistry.open(join(dir, "store"), clock.now);
  });
  afterEach(async () => {
    reg.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("takes the snapshot again when an image is evicted between snapshot and copy", async () => {
    clock.t = t0 - 3_600_000;
    const old = await putImage(reg, "mirror/old", "latest", "old", { mirrored: true, layerBytes: 5_000 });
    clock.t = t0;
    const kept = await putImage(reg, "mirror/kept", "latest", "kept", { mirrored: true, layerBytes: 5_000 });
    let evictions = 0;
    const dest = join(dir, "backup");
    await backupStore(join(dir, "store"), dest, {
      afterSnapshot: async () => {
        if (evictions++ > 0) return;
        // A quota just under what is mirrored: the least recently used image, "old", goes.
        const root = join(dir, "store");
        const quota = (maxSize: number) => ({ maxSize, keepPulledWithinMs: 0, dryRun: false });
        const all = await planQuota(reg.meta, root, quota(0), t0);
        const plan = await planQuota(reg.meta, root, quota(all.mirroredBytes - 1), t0);
        expect(plan.evict.map((e) => e.digest)).toEqual([old]);
        await applyQuota(reg.meta, reg.files, plan);
      },
    });
    expect(evictions).toBe(2);
    const db = new Database(join(dest, "kagami.db"), { readonly: true });
    try {
      const manifests = db.prepare("SELECT digest FROM manifests").pluck().all();
      expect(manifests).toEqual([kept]);
      const needed = db
        .prepare(
          "SELECT digest FROM manifests UNION SELECT child FROM manifest_refs INTERSECT SELECT digest FROM blobs",
        )
        .pluck()
        .all() as string[];
      expect(needed.length).toBeGreaterThan(0);
      for (const d of needed) {
        const [alg, hex] = d.split(":") as [string, string];
        expect(existsSync(join(dest, "blobs", alg, hex.slice(0, 2), hex)), d).toBe(true);
      }
    } finally {
      db.close();
    }
  });
});
