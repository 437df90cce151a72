import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { enforceQuota } from "../../src/registry/housekeeping.ts";
import { LocalRegistry } from "../../src/registry/local.ts";
import { applyQuota, type CacheQuotaOptions, planQuota } from "../../src/store/quota.ts";
import { ociIndex, ociManifest } from "../helpers/push.ts";
import { putImage, TestClock } from "./helpers.ts";

const t0 = Date.UTC(2026, 0, 31);
const hour = 3_600_000;

describe("cacheQuota: least recently pulled mirrored images go first", () => {
  let dir: string;
  let reg: LocalRegistry;
  const clock = new TestClock(t0);
  const images: Record<string, string> = {};

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-quota-"));
    reg = await LocalRegistry.open(dir, clock.now);
    // Fetched three, two and one hour ago; "old" was pulled again half an hour ago.
    for (const [name, ago] of [
      ["old", 3],
      ["middle", 2],
      ["young", 1],
    ] as const) {
      clock.t = t0 - ago * hour;
      images[name] = await putImage(reg, `mirror/${name}`, "latest", name, {
        mirrored: true,
        layerBytes: 10_000,
      });
    }
    clock.t = t0 - hour / 2;
    reg.notePull("mirror/old", images.old!);
    // Pushed here, long ago and never pulled: the quota never touches it.
    clock.t = t0 - 100 * hour;
    images.local = await putImage(reg, "team/app", "v1", "local", { layerBytes: 50_000 });
    clock.t = t0;
  });
  afterEach(async () => {
    reg.close();
    await rm(dir, { recursive: true, force: true });
  });

  const opts = (o: Partial<CacheQuotaOptions>): CacheQuotaOptions => ({
    keepPulledWithinMs: 0,
    dryRun: false,
    ...o,
  });
  const present = async (name: string) =>
    (await reg.headManifest(name === "local" ? "team/app" : `mirror/${name}`, images[name]!)) !== undefined;

  it("counts only mirrored content and evicts the least recently pulled image, blobs and all", async () => {
    const all = await planQuota(reg.meta, dir, opts({ maxSize: 0 }), t0);
    // Three images of a 10 kB layer, a config and a manifest each; the 50 kB local image is not counted.
    expect(all.mirroredBytes).toBeGreaterThan(30_000);
    expect(all.mirroredBytes).toBeLessThan(50_000);
    expect(all.evict.map((e) => e.repo)).toEqual(["mirror/middle", "mirror/young", "mirror/old"]);

    const plan = await planQuota(reg.meta, dir, opts({ maxSize: all.mirroredBytes - 1 }), t0);
    expect(plan.evict.map((e) => e.repo)).toEqual(["mirror/middle"]);
    expect(plan.evict[0]!.tags).toEqual(["latest"]);
    const files = plan.blobs.map((d) => reg.files.path(d));
    for (const f of files) expect(existsSync(f)).toBe(true);
    await applyQuota(reg.meta, reg.files, plan);
    expect(await present("middle")).toBe(false);
    for (const f of files) expect(existsSync(f)).toBe(false);
    for (const name of ["old", "young", "local"]) expect(await present(name)).toBe(true);
    expect((await planQuota(reg.meta, dir, opts({ maxSize: all.mirroredBytes - 1 }), t0)).needBytes).toBe(0);
  });

  it("spares images pulled within keepPulledWithin and those being fetched, and says it cannot make room", async () => {
    const all = await planQuota(reg.meta, dir, opts({ maxSize: 0 }), t0);
    const busyLayer = (await reg.meta.db
      .prepare("SELECT child FROM manifest_refs WHERE repo = 'mirror/middle' AND kind = 'blob'")
      .pluck()
      .all()) as string[];
    const busy = (d: string) => busyLayer.includes(d);
    const plan = await planQuota(reg.meta, dir, opts({ maxSize: all.mirroredBytes - 1 }), t0, busy);
    expect(plan.evict.map((e) => e.repo)).toEqual(["mirror/young"]);

    const recent = await planQuota(
      reg.meta,
      dir,
      opts({ maxSize: 0, keepPulledWithinMs: 1.5 * hour }),
      t0,
      busy,
    );
    expect(recent.evict).toEqual([]);
    expect(recent.protectedImages).toBe(3);
    expect(recent.freedBytes).toBeLessThan(recent.needBytes);

    // Said as a warning, long before the disk is full.
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
    await enforceQuota(
      { store: reg, cacheQuota: opts({ maxSize: 0, keepPulledWithinMs: 1.5 * hour }) },
      { dryRun: false, now: t0, busy, logger },
    );
    const warning = lines
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.level === 40);
    expect(warning?.msg).toMatch(/cache quota of .* cannot be met/);
    for (const name of ["old", "middle", "young"]) expect(await present(name)).toBe(true);
  });

  it("dryRun reports and deletes nothing", async () => {
    const plan = await enforceQuota(
      { store: reg, cacheQuota: opts({ maxSize: 1, dryRun: true }) },
      { dryRun: false, now: t0 },
    );
    expect(plan?.evict).toHaveLength(3);
    for (const name of ["old", "middle", "young", "local"]) expect(await present(name)).toBe(true);
  });

  it("a blob that a pushed image also holds stays when the mirrored image goes", async () => {
    clock.t = t0 - 10 * hour;
    const shared = await putImage(reg, "mirror/shared", "latest", "local", {
      mirrored: true,
      layerBytes: 50_000,
    });
    clock.t = t0;
    const plan = await planQuota(reg.meta, dir, opts({ maxSize: 0 }), t0);
    expect(plan.evict[0]!.digest).toBe(shared);
    // Same config and layer as the local image: only the manifest itself is freed.
    expect(plan.evict[0]!.bytes).toBeLessThan(1000);
    await applyQuota(reg.meta, reg.files, plan);
    expect(await present("local")).toBe(true);
    const local = await reg.getManifest("team/app", "v1");
    const layer = JSON.parse(local!.bytes.toString()).layers[0].digest as string;
    expect(await reg.blobSize("team/app", layer)).toBe(50_000);
  });

  it("an index's child that another index also lists stays when the older index goes", async () => {
    clock.t = t0 - 20 * hour;
    const child = await putImage(reg, "mirror/multi", undefined, "platform", { mirrored: true });
    const own = await putImage(reg, "mirror/multi", undefined, "only-in-a", { mirrored: true });
    const index = (children: string[], note: string) =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: ociIndex,
          manifests: children.map((digest) => ({ mediaType: ociManifest, digest, size: 1 })),
          annotations: { note },
        }),
      );
    const a = await reg.putManifest("mirror/multi", "a", index([child, own], "a"), ociIndex, {
      mirrored: true,
    });
    clock.t = t0 - 5 * hour;
    const b = await reg.putManifest("mirror/multi", "b", index([child], "b"), ociIndex, { mirrored: true });
    clock.t = t0;
    const plan = await planQuota(reg.meta, dir, opts({ maxSize: 0 }), t0);
    const first = plan.evict[0]!;
    expect(first.digest).toBe(a.digest);
    expect(first.manifests.sort()).toEqual([a.digest, own].sort());
    await applyQuota(reg.meta, reg.files, { ...plan, evict: [first], blobs: [] });
    expect(await reg.headManifest("mirror/multi", "b")).toMatchObject({ digest: b.digest });
    expect(await reg.headManifest("mirror/multi", child)).toBeDefined();
    expect(await reg.headManifest("mirror/multi", own)).toBeUndefined();
  });

  it("an image periodic sync copied is the mirror's, with its referrers", async () => {
    clock.t = t0 - 30 * hour;
    const image = await putImage(reg, "synced/app", "v1", "synced");
    const sbom = await putImage(reg, "synced/app", undefined, "sbom", { subject: image });
    reg.meta.markMirrored("synced/app", image);
    const plan = await planQuota(reg.meta, dir, opts({ maxSize: 0 }), t0);
    expect(plan.evict[0]).toMatchObject({ repo: "synced/app", digest: image });
    expect(plan.evict[0]!.manifests.sort()).toEqual([image, sbom].sort());
  });

  it("a sync copy leaves what was pushed here before it local: the user's own signature is never evicted", async () => {
    clock.t = t0 - 30 * hour;
    // allowLocalWrites: the user signed the image the mirror holds, and pushed a copy of another.
    const image = await putImage(reg, "synced/app", "v1", "synced", { mirrored: true });
    const signature = await putImage(reg, "synced/app", undefined, "my signature", { subject: image });
    const before = reg.meta.localManifests("synced/app");
    expect(before).toEqual(new Set([signature]));
    // The sync copies the image again (its copy engine writes as a push would), then marks it.
    await putImage(reg, "synced/app", "v1", "synced");
    reg.meta.markMirrored("synced/app", image, before);
    const plan = await planQuota(reg.meta, dir, opts({ maxSize: 0 }), t0);
    const evicted = plan.evict.find((e) => e.repo === "synced/app");
    expect(evicted?.digest).toBe(image);
    expect(evicted!.manifests).toEqual([image]);
    await applyQuota(reg.meta, reg.files, plan);
    expect(await reg.headManifest("synced/app", signature)).toBeDefined();
  });
});
