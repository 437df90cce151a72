import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CopyError, copyImage } from "../../src/copy/copy.ts";
import { OciLayout } from "../../src/layout/layout.ts";
import { LocalRegistry } from "../../src/registry/local.ts";
import { RemoteRegistry, type RemoteRegistryOptions } from "../../src/remote/remote.ts";
import { type BuiltLayout, buildImageLayout, MiB } from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type FaultRule, RegistryProxy } from "../helpers/registry-proxy.ts";
import { hasTool } from "../helpers/tools.ts";

const haveTools = hasTool("docker-registry");

let work: string;
let dist: RunningDistribution;
let proxy: RegistryProxy;
let image: BuiltLayout;
let bigLayer: string;
let n = 0;

const fast: Partial<RemoteRegistryOptions> = { retryDelay: 5, maxRetryDelay: 50, maxRetries: 3 };

async function fresh(): Promise<LocalRegistry> {
  return LocalRegistry.open(join(work, `store-${n++}`));
}

function through(opts: Partial<RemoteRegistryOptions> = {}): RemoteRegistry {
  return new RemoteRegistry({ urls: [proxy.url], ...fast, ...opts });
}

const blobPath = (digest: string) => new RegExp(`/blobs/${digest}$`);

describe.skipIf(!haveTools)("copies through a faulty upstream never keep a wrong byte", () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kagami-faults-"));
    image = await buildImageLayout(join(work, "src"), {
      tag: "v1",
      layerSizes: [undefined, 2 * MiB],
      random: true,
    });
    bigLayer = image.images[0]!.layers[1]!.digest;
    dist = await startDistribution();
    const direct = new RemoteRegistry({ urls: [dist.url] });
    await copyImage(
      { registry: await OciLayout.open(join(work, "src")), repo: "", reference: "v1" },
      { registry: direct, repo: "lib/app", tags: ["v1"] },
    );
    await direct.close();
    proxy = await RegistryProxy.start(dist.url);
  });
  afterAll(async () => {
    await proxy?.stop();
    await dist?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });
  afterEach(() => {
    proxy.setRules([]);
    proxy.clear();
  });

  async function copyWith(rules: FaultRule[], opts: Partial<RemoteRegistryOptions> = {}, retries = 3) {
    proxy.setRules(rules);
    const remote = through(opts);
    const store = await fresh();
    try {
      const result = await copyImage(
        { registry: remote, repo: "lib/app", reference: "v1", name: `docker://${proxy.host}/lib/app:v1` },
        { registry: store, repo: "lib/app", tags: ["v1"] },
        { retries, retryDelayMs: 5, maxRetryDelayMs: 50 },
      ).catch((e: unknown) => e);
      const stored = await store.blobSize("lib/app", bigLayer);
      const fileThere = await store.files.size(bigLayer);
      const manifest = await store.getManifest("lib/app", "v1");
      return { result, stored, fileThere, manifest };
    } finally {
      store.close();
      await remote.close();
    }
  }

  it("recovers from a corrupted body by downloading again", async () => {
    const r = await copyWith([
      { method: "GET", path: blobPath(bigLayer), fault: { kind: "corrupt" }, times: 1 },
    ]);
    expect(r.result).toMatchObject({ digest: image.digest });
    expect(r.manifest?.digest).toBe(image.digest);
    expect(proxy.log.filter((l) => l.method === "GET" && blobPath(bigLayer).test(l.path))).toHaveLength(2);
  });

  it("fails naming the image and the cause when the body is always corrupted, storing nothing", async () => {
    const r = await copyWith(
      [{ method: "GET", path: blobPath(bigLayer), fault: { kind: "corrupt" } }],
      {},
      2,
    );
    expect(r.result).toBeInstanceOf(CopyError);
    const msg = (r.result as Error).message;
    expect(msg).toContain(`docker://${proxy.host}/lib/app:v1`);
    expect(msg).toContain(bigLayer);
    expect(msg).toMatch(/corrupted/);
    expect(r.stored).toBeUndefined();
    expect(r.fileThere).toBeUndefined();
    expect(r.manifest).toBeUndefined();
  });

  it("resumes a truncated body where it stopped", async () => {
    const r = await copyWith([
      { method: "GET", path: blobPath(bigLayer), fault: { kind: "truncate", afterBytes: MiB }, times: 2 },
    ]);
    expect(r.result).toMatchObject({ digest: image.digest });
    expect(r.stored).toBe(image.images[0]!.layers[1]!.size);
  });

  it("refuses a body shorter than its descriptor even when the Content-Length agrees", async () => {
    const r = await copyWith([{ method: "GET", path: blobPath(bigLayer), fault: { kind: "short" } }], {}, 1);
    expect(String((r.result as Error).message)).toMatch(/serves \d+ bytes, the descriptor says/);
    expect(r.stored).toBeUndefined();
    expect(r.fileThere).toBeUndefined();
  });

  it("retries connection resets and 500s", async () => {
    const r = await copyWith([
      { method: "GET", path: /\/manifests\/v1$/, fault: { kind: "reset" }, times: 1 },
      { method: "GET", path: blobPath(bigLayer), fault: { kind: "status", status: 500 }, times: 2 },
      { method: "HEAD", path: /\/blobs\//, fault: { kind: "status", status: 503 }, times: 1 },
    ]);
    expect(r.result).toMatchObject({ digest: image.digest });
  });

  it("gives up on a persistent 500 with the status in the message", async () => {
    const r = await copyWith(
      [{ method: "GET", path: blobPath(bigLayer), fault: { kind: "status", status: 500 } }],
      { maxRetries: 2 },
    );
    const msg = String((r.result as Error).message);
    expect(msg).toContain(`docker://${proxy.host}/lib/app:v1`);
    expect(msg).toMatch(/HTTP 500/);
    expect(r.stored).toBeUndefined();
    expect(proxy.log.filter((l) => blobPath(bigLayer).test(l.path)).length).toBe(3);
  });

  it("waits as long as a 429 Retry-After asks", async () => {
    const started = Date.now();
    const r = await copyWith([
      {
        method: "GET",
        path: /\/manifests\/v1$/,
        fault: { kind: "status", status: 429, retryAfter: 1 },
        times: 1,
      },
    ]);
    expect(r.result).toMatchObject({ digest: image.digest });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it("abandons a stalled body after the body timeout and picks it up again", async () => {
    const r = await copyWith(
      [{ method: "GET", path: blobPath(bigLayer), fault: { kind: "stall", afterBytes: MiB }, times: 1 }],
      { bodyTimeout: 300 },
    );
    expect(r.result).toMatchObject({ digest: image.digest });
  });

  it("retries an upload the destination failed, and leaves no partial blob there", async () => {
    const dest = through();
    const src = new RemoteRegistry({ urls: [dist.url], ...fast });
    try {
      proxy.setRules([
        { method: "PUT", path: /\/blobs\/uploads\//, fault: { kind: "status", status: 500 }, times: 2 },
      ]);
      const r = await copyImage(
        { registry: src, repo: "lib/app", reference: "v1" },
        { registry: dest, repo: "copy/app", tags: ["v1"] },
        { retries: 3, retryDelayMs: 5 },
      );
      expect(r.digest).toBe(image.digest);
      expect((await src.getManifest("copy/app", "v1"))?.digest).toBe(image.digest);

      // a source that always sends corrupted bytes never gets its blob committed at the destination
      proxy.setRules([]);
      const badSrc = through();
      const plainDest = new RemoteRegistry({ urls: [dist.url], ...fast });
      const srcProxy = await RegistryProxy.start(dist.url, [
        { method: "GET", path: blobPath(bigLayer), fault: { kind: "corrupt" } },
      ]);
      const corrupting = new RemoteRegistry({ urls: [srcProxy.url], ...fast });
      try {
        const err = await copyImage(
          { registry: corrupting, repo: "lib/app", reference: "v1" },
          { registry: plainDest, repo: "never/app", tags: ["v1"] },
          { retries: 1, retryDelayMs: 5 },
        ).catch((e: Error) => e);
        expect(err).toBeInstanceOf(CopyError);
        expect(await plainDest.blobSize("never/app", bigLayer)).toBeUndefined();
        expect(await plainDest.getManifest("never/app", "v1")).toBeUndefined();
      } finally {
        await srcProxy.stop();
        await corrupting.close();
        await plainDest.close();
        await badSrc.close();
      }
    } finally {
      await dest.close();
      await src.close();
    }
  });
});
