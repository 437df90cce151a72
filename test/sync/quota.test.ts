import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { type IncomingMessage, request } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { kagamiBin, type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { imageManifest, ociManifest, pushBlob, sha256 } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

const run = promisify(execFile);
const MiB = 1024 * 1024;

interface Image {
  digest: string;
  blobs: string[];
  layer: Buffer;
}

async function pushSized(base: string, repo: string, layerBytes: number): Promise<Image> {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", repo }));
  const layer = randomBytes(layerBytes);
  await pushBlob(base, repo, config);
  await pushBlob(base, repo, layer);
  const manifest = imageManifest(config, [layer]);
  const res = await fetch(`${base}/v2/${repo}/manifests/latest`, {
    method: "PUT",
    body: manifest,
    headers: { "Content-Type": ociManifest },
  });
  expect(res.status).toBe(201);
  return { digest: sha256(manifest), blobs: [sha256(config), sha256(layer)], layer };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.runIf(hasTool("docker-registry"))("cacheQuota on a mirror of distribution", () => {
  let upstream: RunningDistribution;
  let mirror: RunningKagami;
  const images: Record<string, Image> = {};
  const blobFile = (d: string) => join(mirror.rootDir, "data", "blobs", "sha256", d.slice(7, 9), d.slice(7));
  const gc = async (...flags: string[]) =>
    (await run(process.execPath, [kagamiBin, "gc", "--config", mirror.configPath, ...flags])).stdout;

  beforeAll(async () => {
    upstream = await startDistribution();
    images.one = await pushSized(upstream.url, "lib/one", 4 * MiB);
    images.two = await pushSized(upstream.url, "lib/two", 24 * MiB);
    images.three = await pushSized(upstream.url, "lib/three", 4 * MiB);
    mirror = await startKagami({
      config: {
        storage: { cacheQuota: { maxSize: "30MiB", keepPulledWithin: "0s" } },
        extensions: {
          sync: { enable: true, registries: [{ urls: [upstream.url], onDemand: true, tlsVerify: false }] },
        },
      },
    });
  });
  afterAll(async () => {
    await mirror?.destroy();
    await upstream?.stop();
  });

  it("evicts the least recently pulled image first, reports it in a dry run, and breaks no pull in progress", async () => {
    // Fetched in the order one, two, three (a HEAD fetches without counting as a pull) ...
    for (const name of ["one", "two", "three"]) {
      const res = await fetch(`${mirror.url}/v2/lib/${name}/manifests/latest`, { method: "HEAD" });
      expect(res.status).toBe(200);
      await until(`the blobs of ${name}`, () => images[name]!.blobs.every((d) => existsSync(blobFile(d))));
    }
    // ... then one and three are pulled: two is now the least recently pulled.
    for (const name of ["one", "three"]) {
      const res = await fetch(`${mirror.url}/v2/lib/${name}/manifests/latest`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const db = new Database(join(mirror.rootDir, "data", "kagami.db"), { readonly: true });
    const pulled = db.prepare("SELECT count(*) FROM manifests WHERE pulled_at IS NOT NULL").pluck();
    await until("the pulls to be written", () => pulled.get() === 2);
    db.close();

    const dry = await gc("--dry-run");
    expect(dry).toMatch(new RegExp(`would evict lib/two@${images.two!.digest} \\(latest\\)`));
    expect(dry).not.toMatch(/lib\/one|lib\/three/);
    expect(existsSync(blobFile(images.two!.blobs[1]!))).toBe(true);

    // A client is part-way through two's big layer when it is evicted.
    const res = await new Promise<IncomingMessage>((resolve, reject) =>
      request(`${mirror.url}/v2/lib/two/blobs/${images.two!.blobs[1]}`, resolve).on("error", reject).end(),
    );
    expect(res.statusCode).toBe(200);
    const hash = createHash("sha256");
    let received = 0;
    const firstChunk = new Promise<void>((resolve) =>
      res.once("data", (c: Buffer) => {
        res.pause();
        hash.update(c);
        received += c.length;
        resolve();
      }),
    );
    await firstChunk;

    const out = await gc();
    expect(out).toMatch(new RegExp(`evicted lib/two@${images.two!.digest}`));
    expect(existsSync(blobFile(images.two!.blobs[1]!))).toBe(false);
    for (const name of ["one", "three"])
      for (const d of images[name]!.blobs) expect(existsSync(blobFile(d)), `${name} ${d}`).toBe(true);

    res.on("data", (c: Buffer) => {
      hash.update(c);
      received += c.length;
    });
    res.resume();
    await new Promise((r) => res.once("end", r));
    expect(received).toBe(24 * MiB);
    expect(`sha256:${hash.digest("hex")}`).toBe(images.two!.blobs[1]);

    // The mirror fetches an evicted image again when it is asked for.
    const again = await fetch(`${mirror.url}/v2/lib/two/manifests/latest`);
    expect(again.status).toBe(200);
    expect(again.headers.get("docker-content-digest")).toBe(images.two!.digest);
    await again.arrayBuffer();
    // Over the quota again, and now one is the least recently pulled.
    const next = await gc("--dry-run");
    expect(next).toMatch(/would evict lib\/one@/);
    expect(next).not.toMatch(/lib\/two|lib\/three/);
  });
});
