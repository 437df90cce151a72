import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, rm, statfs, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import {
  imageManifest,
  ociManifest,
  type PushedImage,
  pushBlob,
  pushImage,
  sha256,
} from "../helpers/push.ts";
import { hasTool, privateMount } from "../helpers/tools.ts";

const MiB = 1024 * 1024;
// A private mount namespace with a small tmpfs for the data directory needs root and unshare.
const canRun = hasTool("unshare") && (process.getuid?.() === 0 || process.env.CI === "true");

async function expectFullError(res: Response, code: string): Promise<void> {
  expect(res.status).toBe(507);
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  expect(body.errors[0]!.code).toBe(code);
  expect(body.errors[0]!.message).toMatch(/storage is full \((ENOSPC|SQLITE_FULL)\).*free space/);
}

interface SmallDisk {
  kagami: RunningKagami;
  root: string;
  /** The data directory as the test sees it: through the server's own mount namespace. */
  data: string;
}

/** Kagami with its data directory on a 16 MiB tmpfs that only its own mount namespace sees. */
async function startOnSmallDisk(config?: Record<string, unknown>): Promise<SmallDisk> {
  const root = await mkdtemp(join(tmpdir(), "kagami-full-"));
  await mkdir(join(root, "data"));
  const kagami = await startKagami({
    rootDir: root,
    config,
    launcher: privateMount('mount -t tmpfs -o size=16m tmpfs "$0"', join(root, "data")),
  });
  return { kagami, root, data: `/proc/${kagami.proc.pid}/root${join(root, "data")}` };
}

/** Fills the disk but for `leave` bytes. */
async function fill(file: string, leave: number): Promise<void> {
  const fs = await statfs(dirname(file));
  await writeFile(file, Buffer.alloc(fs.bavail * fs.bsize - leave));
}

async function stopSmallDisk(disk: SmallDisk | undefined): Promise<void> {
  await disk?.kagami.stop();
  if (disk) await rm(disk.root, { recursive: true, force: true });
}

describe.skipIf(!canRun)("a full disk", () => {
  let disk: SmallDisk;
  let kagami: RunningKagami;
  let image: PushedImage;
  let data: string;
  const filler = () => join(data, "filler");

  beforeAll(async () => {
    disk = await startOnSmallDisk();
    ({ kagami, data } = disk);
    image = await pushImage(kagami.url, "app", "v1");
    // About 4 MiB stay free: an 8 MiB blob cannot fit, and SQLite still has room for its rows.
    await fill(filler(), 4 * MiB);
  }, 60_000);

  afterAll(() => stopSmallDisk(disk));

  async function expectReadsWork(): Promise<void> {
    const m = await fetch(`${kagami.url}/v2/app/manifests/v1`, { headers: { Accept: ociManifest } });
    expect(m.status).toBe(200);
    expect(Buffer.from(await m.arrayBuffer()).equals(image.manifest)).toBe(true);
    const b = await fetch(`${kagami.url}/v2/app/blobs/${image.layers[0]}`);
    expect(b.status).toBe(200);
    expect(sha256(Buffer.from(await b.arrayBuffer()))).toBe(image.layers[0]);
    expect(kagami.proc.exitCode).toBeNull();
  }

  const uploadFiles = () => readdir(join(data, "uploads"));

  it("answers a monolithic push that does not fit with 507 and drops its data", async () => {
    const blob = randomBytes(8 * MiB);
    const res = await fetch(`${kagami.url}/v2/app/blobs/uploads/?digest=${sha256(blob)}`, {
      method: "POST",
      body: blob,
      headers: { "Content-Type": "application/octet-stream" },
    });
    await expectFullError(res, "BLOB_UPLOAD_INVALID");
    expect(await uploadFiles()).toEqual([]);
    await expectReadsWork();
  });

  it("answers a chunk that does not fit with 507 and drops the session", async () => {
    const start = await fetch(`${kagami.url}/v2/app/blobs/uploads/`, { method: "POST" });
    expect(start.status).toBe(202);
    const location = new URL(start.headers.get("location")!, kagami.url);
    const res = await fetch(location, {
      method: "PATCH",
      body: randomBytes(8 * MiB),
      headers: { "Content-Type": "application/octet-stream" },
    });
    await expectFullError(res, "BLOB_UPLOAD_INVALID");
    expect(await uploadFiles()).toEqual([]);
    const status = await fetch(location);
    expect(status.status).toBe(404);
    await expectReadsWork();
  });

  it("answers a closing PUT whose body does not fit with 507 and drops the session", async () => {
    const blob = randomBytes(8 * MiB);
    const start = await fetch(`${kagami.url}/v2/app/blobs/uploads/`, { method: "POST" });
    const location = new URL(start.headers.get("location")!, kagami.url);
    location.searchParams.set("digest", sha256(blob));
    const res = await fetch(location, { method: "PUT", body: blob });
    await expectFullError(res, "BLOB_UPLOAD_INVALID");
    expect(await uploadFiles()).toEqual([]);
    await expectReadsWork();
  });

  it("answers a manifest push on a completely full disk with 507", async () => {
    const fh = await open(join(data, "filler-rest"), "w");
    try {
      for (;;) await fh.write(Buffer.alloc(64 * 1024));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
    } finally {
      await fh.close();
    }
    const manifest = JSON.parse(image.manifest.toString()) as Record<string, unknown>;
    const res = await fetch(`${kagami.url}/v2/app/manifests/v2`, {
      method: "PUT",
      body: JSON.stringify({ ...manifest, annotations: { other: "yes" } }),
      headers: { "Content-Type": ociManifest },
    });
    await expectFullError(res, "INTERNAL_ERROR");
    expect(await readdir(join(data, "tmp"))).toEqual([]);
    await expectReadsWork();
    await unlink(join(data, "filler-rest"));
  });

  it("takes pushes again once space is freed", async () => {
    await unlink(filler());
    const blob = randomBytes(8 * MiB);
    const digest = await pushBlob(kagami.url, "app", blob);
    const got = await fetch(`${kagami.url}/v2/app/blobs/${digest}`);
    expect(sha256(Buffer.from(await got.arrayBuffer()))).toBe(digest);

    const chunked = randomBytes(6 * MiB);
    const start = await fetch(`${kagami.url}/v2/app/blobs/uploads/`, { method: "POST" });
    const location = new URL(start.headers.get("location")!, kagami.url);
    const patch = await fetch(location, { method: "PATCH", body: chunked });
    expect(patch.status).toBe(202);
    const done = new URL(patch.headers.get("location")!, kagami.url);
    done.searchParams.set("digest", sha256(chunked));
    expect((await fetch(done, { method: "PUT" })).status).toBe(201);
    await expectReadsWork();
  });
});

describe.skipIf(!canRun || !hasTool("docker-registry"))("a full disk under the mirror", () => {
  let upstream: RunningDistribution;
  let disk: SmallDisk;

  beforeAll(async () => {
    upstream = await startDistribution();
    disk = await startOnSmallDisk({
      extensions: {
        sync: {
          enable: true,
          registries: [{ urls: [upstream.url], onDemand: true, tlsVerify: false, negativeCacheTTL: "1ms" }],
        },
      },
    });
  }, 60_000);
  afterAll(async () => {
    await stopSmallDisk(disk);
    await upstream?.stop();
  });

  it("fails a pull-through fetch that does not fit cleanly, keeps nothing of it, and fetches it once space is freed", async () => {
    const { kagami, data } = disk;
    const blob = randomBytes(8 * MiB);
    const digest = await pushBlob(upstream.url, "lib/big", blob);
    const config = Buffer.from("{}");
    await pushBlob(upstream.url, "lib/big", config);
    const manifest = imageManifest(config, [blob]);
    const put = await fetch(`${upstream.url}/v2/lib/big/manifests/v1`, {
      method: "PUT",
      body: manifest,
      headers: { "Content-Type": ociManifest },
    });
    expect(put.status).toBe(201);
    await fill(join(data, "filler"), 4 * MiB);
    // The mirror serves a blob only to a repository whose manifest names it; the manifest still fits.
    expect((await fetch(`${kagami.url}/v2/lib/big/manifests/v1`)).status).toBe(200);
    const res = await fetch(`${kagami.url}/v2/lib/big/blobs/${digest}`);
    if (res.status === 200) {
      // Headers went out before the disk filled: the only honest end is a cut body, never all of it.
      await expect(res.arrayBuffer()).rejects.toThrow();
    } else {
      await expectFullError(res, "INTERNAL_ERROR");
    }
    expect(await readdir(join(data, "uploads"))).toEqual([]);
    expect(existsSync(join(data, "blobs", "sha256", digest.slice(7, 9), digest.slice(7)))).toBe(false);
    expect((await fetch(`${kagami.url}/v2/`)).status).toBe(200);
    expect(kagami.proc.exitCode).toBeNull();

    await unlink(join(data, "filler"));
    const again = await fetch(`${kagami.url}/v2/lib/big/blobs/${digest}`);
    expect(again.status).toBe(200);
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(digest);
  });
});
