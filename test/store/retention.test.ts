import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfigFile } from "../../src/config/config.ts";
import { housekeep } from "../../src/registry/housekeeping.ts";
import { Stores } from "../../src/registry/stores.ts";
import { type RunningKagami, repoRoot, startKagami } from "../helpers/kagami.ts";
import { pushImage } from "../helpers/push.ts";
import { day, putImage, TestClock } from "./helpers.ts";

const t0 = Date.UTC(2026, 0, 31);

interface FixtureConfig {
  storage: {
    rootDirectory: string;
    retention: { dryRun?: boolean; policies: unknown[] };
    subPaths: Record<string, { rootDirectory: string }>;
  };
}

/** zot's example retention config (test/fixtures/zot-configs/retention.json), stores under `dir`. */
async function fixtureConfig(dir: string, edit: (raw: FixtureConfig) => void = () => {}) {
  const raw = JSON.parse(
    await readFile(join(repoRoot, "test/fixtures/zot-configs/retention.json"), "utf8"),
  ) as FixtureConfig;
  raw.storage.rootDirectory = join(dir, "root");
  raw.storage.subPaths["/a"]!.rootDirectory = join(dir, "a");
  edit(raw);
  const file = join(dir, "config.json");
  await writeFile(file, JSON.stringify(raw));
  return loadConfigFile(file).config;
}

describe("storage.retention (zot's policies)", () => {
  let dir: string;
  let stores: Stores | undefined;
  const clock = new TestClock(t0);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-retention-"));
    clock.t = t0;
  });
  afterEach(async () => {
    stores?.close();
    stores = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** Pushes at `daysAgo`, optionally pulled at `pulledDaysAgo`. */
  async function image(
    repo: string,
    tag: string | undefined,
    daysAgo: number,
    pulledDaysAgo?: number,
    subject?: string,
  ) {
    const store = stores!.for(repo);
    clock.t = t0 - daysAgo * day;
    const digest = await putImage(
      store,
      repo,
      tag,
      `${repo}:${tag ?? "untagged"}:${daysAgo}`,
      subject ? { subject } : {},
    );
    if (pulledDaysAgo !== undefined) {
      clock.t = t0 - pulledDaysAgo * day;
      store.notePull(repo, digest);
    }
    clock.t = t0;
    return digest;
  }

  async function tags(repo: string) {
    return stores!.for(repo).listTags(repo);
  }
  async function has(repo: string, digest: string) {
    return (await stores!.for(repo).headManifest(repo, digest)) !== undefined;
  }
  async function run(dryRun = false) {
    const reports = [];
    for (const h of stores!.housekeeping) reports.push(await housekeep(h, { dryRun, gcDelayMs: 0, now: t0 }));
    return reports;
  }

  it("loads zot's example and keeps tags by patterns and pulledWithin; deletes the rest, untagged after the delay", async () => {
    const config = await fixtureConfig(dir);
    expect(config.storage.retention?.delayMs).toBe(day);
    expect(config.storage.retention?.policies).toHaveLength(3);
    stores = await Stores.open(config.storage, clock.now);

    // infra/*: the first keepTags entry a tag matches decides; v3.* must have been pulled within a week.
    const v2 = await image("infra/app", "v2.0", 60);
    const prod = await image("infra/app", "web-prod", 60);
    const v3pulled = await image("infra/app", "v3.1", 30, 2);
    const v3stale = await image("infra/app", "v3.0", 30, 20);
    const latest = await image("infra/app", "latest", 30);
    const recentUntagged = await image("infra/app", undefined, 0.5);
    // deleteReferrers is false here: a referrer of a deleted image stays.
    const sig = await image("infra/app", undefined, 30, undefined, v3stale);
    // tmp/**: v1.* pulled or pushed within a week; referrers of what goes, go.
    const tmpPulled = await image("tmp/ci/job", "v1.0", 30, 1);
    const tmpStale = await image("tmp/ci/job", "v1.1", 30);
    const tmpSig = await image("tmp/ci/job", undefined, 30, undefined, tmpStale);
    const tmpOther = await image("tmp/ci/job", "nightly", 1);
    // **: recent counts and windows keep everything here.
    const other = await image("library/busybox", "1.36", 90);

    const [root] = await run();
    expect(root!.retention.map((a) => `${a.kind} ${a.repo} ${a.tag ?? a.digest}`).sort()).toEqual(
      [
        "tag infra/app latest",
        "tag infra/app v3.0",
        `manifest infra/app ${latest}`,
        `manifest infra/app ${v3stale}`,
        "tag tmp/ci/job nightly",
        "tag tmp/ci/job v1.1",
        `manifest tmp/ci/job ${tmpStale}`,
        `manifest tmp/ci/job ${tmpSig}`,
      ].sort(),
    );
    expect(await tags("infra/app")).toEqual(["v2.0", "v3.1", "web-prod"]);
    for (const d of [v2, prod, v3pulled, recentUntagged, sig]) expect(await has("infra/app", d)).toBe(true);
    for (const d of [latest, v3stale]) expect(await has("infra/app", d)).toBe(false);
    expect(await tags("tmp/ci/job")).toEqual(["v1.0"]);
    expect(await has("tmp/ci/job", tmpPulled)).toBe(true);
    // Untagged now but pushed a day ago: younger than the delay, so it stays until the next run.
    expect(await has("tmp/ci/job", tmpOther)).toBe(true);
    for (const d of [tmpStale, tmpSig]) expect(await has("tmp/ci/job", d)).toBe(false);
    expect(await tags("library/busybox")).toEqual(["1.36"]);
    expect(await has("library/busybox", other)).toBe(true);
  });

  it("keeps the most recently pushed and pulled tags by count; a sub-path follows its own policy", async () => {
    const config = await fixtureConfig(dir, (raw) => {
      raw.storage.retention.policies = [
        {
          repositories: ["counts/**"],
          keepTags: [{ mostRecentlyPushedCount: 2, mostRecentlyPulledCount: 1 }],
        },
      ];
    });
    stores = await Stores.open(config.storage, clock.now);
    for (let i = 1; i <= 5; i++) await image("counts/app", `t${i}`, 50 - i, i === 1 ? 10 : undefined);
    await image("a/tool", "old", 10);
    await image("a/tool", "new", 5);
    // No policy names this repository: nothing in it is touched, untagged or not.
    const untouched = await image("elsewhere/app", undefined, 400);

    await run();
    expect(await tags("counts/app")).toEqual(["t1", "t4", "t5"]);
    expect(await tags("a/tool")).toEqual(["new"]);
    expect(await has("elsewhere/app", untouched)).toBe(true);
  });

  it("keeps cosign signature tags of kept images whatever keepTags says; deleteReferrers removes those of deleted ones", async () => {
    const config = await fixtureConfig(dir);
    stores = await Stores.open(config.storage, clock.now);
    const sigTag = (d: string) => `${d.replace(":", "-")}.sig`;
    // infra/*: keepTags names v2.* only; zot files cosign tags as signatures, never as tags to retain.
    const v2 = await image("infra/app", "v2.0", 60);
    const v2sig = await image("infra/app", sigTag(v2), 60);
    const gone = await image("infra/app", "v9.9", 60);
    const goneSig = await image("infra/app", sigTag(gone), 60);
    // tmp/**: deleteReferrers; the signature of the image that goes goes with it.
    const keep = await image("tmp/x", "v1.0", 1);
    const keepSig = await image("tmp/x", sigTag(keep), 1);
    const stale = await image("tmp/x", "v1.1", 30);
    const staleSig = await image("tmp/x", sigTag(stale), 30);
    const staleRefTag = await image("tmp/x", stale.replace(":", "-"), 30);

    await run();
    // deleteReferrers is false for infra/*: the signature of the deleted v9.9 stays, as in zot.
    expect(await tags("infra/app")).toEqual([sigTag(v2), sigTag(gone), "v2.0"].sort());
    for (const d of [v2, v2sig, goneSig]) expect(await has("infra/app", d)).toBe(true);
    expect(await has("infra/app", gone)).toBe(false);
    expect(await tags("tmp/x")).toEqual([sigTag(keep), "v1.0"].sort());
    expect(await has("tmp/x", keepSig)).toBe(true);
    for (const d of [stale, staleSig, staleRefTag]) expect(await has("tmp/x", d)).toBe(false);
  });

  it("dryRun reports what would go and deletes nothing", async () => {
    const config = await fixtureConfig(dir, (raw) => {
      raw.storage.retention.dryRun = true;
    });
    stores = await Stores.open(config.storage, clock.now);
    const stale = await image("tmp/x", "v1.9", 30);
    const [root] = await run();
    expect(root!.retentionApplied).toBe(false);
    expect(root!.retention.map((a) => a.kind)).toEqual(["tag", "manifest"]);
    expect(await tags("tmp/x")).toEqual(["v1.9"]);
    expect(await has("tmp/x", stale)).toBe(true);

    // kagami gc --dry-run reports the same, whatever the config says.
    const live = await fixtureConfig(dir);
    stores.close();
    stores = await Stores.open(live.storage, clock.now);
    const [again] = await run(true);
    expect(again!.retentionApplied).toBe(false);
    expect(again!.retention).toHaveLength(2);
    expect(await has("tmp/x", stale)).toBe(true);
  });
});

describe("retention runs with the periodic garbage collection", () => {
  let k: RunningKagami | undefined;
  afterEach(async () => {
    await k?.destroy();
  });

  it("deletes the tags no rule keeps, and their images, at the next collection", async () => {
    k = await startKagami({
      config: {
        storage: {
          gc: true,
          gcDelay: "0s",
          gcInterval: "1s",
          retention: {
            delay: "0s",
            policies: [{ repositories: ["team/**"], keepTags: [{ patterns: ["^keep"] }] }],
          },
        },
      },
    });
    const kept = await pushImage(k.url, "team/app", "keep-1");
    const dropped = await pushImage(k.url, "team/app", "drop-1");
    const other = await pushImage(k.url, "other/app", "drop-1");
    const status = async (repo: string, ref: string) =>
      (await fetch(`${k!.url}/v2/${repo}/manifests/${ref}`, { method: "HEAD" })).status;
    for (let i = 0; i < 300 && (await status("team/app", dropped.digest)) !== 404; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await status("team/app", dropped.digest)).toBe(404);
    expect(await status("team/app", "drop-1")).toBe(404);
    expect(await status("team/app", "keep-1")).toBe(200);
    expect(await status("team/app", kept.digest)).toBe(200);
    // No policy names other/app.
    expect(await status("other/app", other.digest)).toBe(200);
    expect(k.output()).toMatch(/"module":"retention".*"tag":"drop-1"/);
  });
  it("takes a reloaded configuration's retention without a restart (dryRun switched off)", async () => {
    const retention = (dryRun: boolean) => ({
      dryRun,
      delay: "0s",
      policies: [{ repositories: ["team/**"], keepTags: [{ patterns: ["^keep"] }] }],
    });
    const storage = { gc: true, gcDelay: "0s", gcInterval: "1s", retention: retention(true) };
    k = await startKagami({ config: { storage } });
    const dropped = await pushImage(k.url, "team/app", "drop-1");
    const status = async () =>
      (await fetch(`${k!.url}/v2/team/app/manifests/${dropped.digest}`, { method: "HEAD" })).status;
    const dryRunDecision = /"module":"retention","dryRun":true.*"tag":"drop-1"/;
    for (let i = 0; i < 300 && !dryRunDecision.test(k.output()); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(k.output()).toMatch(dryRunDecision);
    expect(await status()).toBe(200);

    const raw = JSON.parse(await readFile(k.configPath, "utf8")) as { storage: typeof storage };
    raw.storage.retention = retention(false);
    await writeFile(k.configPath, JSON.stringify(raw));
    for (let i = 0; i < 300 && (await status()) !== 404; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await status()).toBe(404);
  });
});
