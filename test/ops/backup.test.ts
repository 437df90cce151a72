/**
 * `kagami backup` beside a running server, a second incremental run, and a restore: a fresh server
 * on the restored directory serves every image that was backed up, tags and blobs alike.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kagamiBin, type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { type PushedImage, pushImage, sha256 } from "../helpers/push.ts";

function backup(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [kagamiBin, "backup", ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("backup and restore", () => {
  let k: RunningKagami;
  let restored: RunningKagami | undefined;
  let dir: string;
  const images: [string, PushedImage][] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-backup-"));
    k = await startKagami();
    images.push(["team/app:v1", await pushImage(k.url, "team/app", "v1", { layers: 2 })]);
  });

  afterAll(async () => {
    await k?.destroy();
    await restored?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("backs up a running server, then only what was added since", async () => {
    const first = await backup("--config", k.configPath, join(dir, "backup"));
    expect(first, first.stderr).toMatchObject({ code: 0 });
    // config, two layers and the manifest (manifests are blobs too)
    expect(first.stdout).toMatch(/4 blobs copied .*, 0 already there/);

    images.push(["team/app:v2", await pushImage(k.url, "team/app", "v2", { layers: 1 })]);
    const second = await backup("--config", k.configPath, join(dir, "backup"));
    expect(second, second.stderr).toMatchObject({ code: 0 });
    // the new image's config, layer and manifest; the first image's four are kept
    expect(second.stdout).toMatch(/3 blobs copied .*, 4 already there/);
  });

  it("restores into a directory a fresh server serves every backed-up image from", async () => {
    const root = join(dir, "restored");
    await mkdir(root);
    await cp(join(dir, "backup", "root"), join(root, "data"), { recursive: true });
    restored = await startKagami({ rootDir: root });
    for (const [ref, img] of images) {
      const [repo, tag] = ref.split(":") as [string, string];
      const m = await fetch(`${restored.url}/v2/${repo}/manifests/${tag}`, {
        headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
      });
      expect(m.status, ref).toBe(200);
      expect(sha256(new Uint8Array(await m.arrayBuffer()))).toBe(img.digest);
      for (const digest of [img.config, ...img.layers]) {
        const b = await fetch(`${restored.url}/v2/${repo}/blobs/${digest}`);
        expect(b.status, digest).toBe(200);
        expect(sha256(new Uint8Array(await b.arrayBuffer()))).toBe(digest);
      }
    }
  });

  it("refuses a destination that holds something else", async () => {
    const other = join(dir, "not-a-backup", "root");
    await mkdir(other, { recursive: true });
    await writeFile(join(other, "notes.txt"), "mine\n");
    const r = await backup("--config", k.configPath, join(dir, "not-a-backup"));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("holds files other than a Kagami backup");
  });
});

describe("backup of sub-path stores", () => {
  it("gives nested and underscored prefixes directories of their own", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kagami-backup-subpaths-"));
    const k = await startKagami({
      config: {
        storage: {
          subPaths: {
            "/a/b": { rootDirectory: join(dir, "ab") },
            "/a_b": { rootDirectory: join(dir, "a_b") },
          },
        },
      },
    });
    try {
      const nested = await pushImage(k.url, "a/b/app", "v1");
      const underscored = await pushImage(k.url, "a_b/app", "v1");
      const r = await backup("--config", k.configPath, join(dir, "backup"));
      expect(r, r.stderr).toMatchObject({ code: 0 });
      // Before, both went to subpaths/_a_b: the second snapshot replaced the first's database.
      for (const [sub, img] of [
        ["a+b", nested],
        ["a_b", underscored],
      ] as const) {
        const db = new Database(join(dir, "backup", "subpaths", sub, "kagami.db"), { readonly: true });
        try {
          expect(db.prepare("SELECT digest FROM manifests").pluck().all(), sub).toEqual([img.digest]);
        } finally {
          db.close();
        }
      }
    } finally {
      await k.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
