import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bigDigest, bigStream } from "../helpers/bigdata.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { ociManifest, pushBlob, pushImage, sha256 } from "../helpers/push.ts";
import { RegistryProxy } from "../helpers/registry-proxy.ts";
import { hasTool } from "../helpers/tools.ts";

const MiB = 1024 * 1024;

/** Streams a big blob into a registry (POST, then PUT with the body), without holding it in memory. */
async function pushBig(base: string, repo: string, size: number): Promise<string> {
  const digest = await bigDigest(size);
  const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  await post.arrayBuffer();
  const location = new URL(post.headers.get("location")!, base);
  location.searchParams.set("digest", digest);
  await new Promise<void>((resolve, reject) => {
    const req = request(location, {
      method: "PUT",
      headers: { "Content-Length": String(size), "Content-Type": "application/octet-stream" },
    });
    req.on("response", (res) => {
      res.resume();
      res.statusCode === 201 ? resolve() : reject(new Error(`push ${res.statusCode}`));
    });
    req.on("error", reject);
    bigStream(size).pipe(req);
  });
  return digest;
}

async function pushManifest(
  base: string,
  repo: string,
  tag: string,
  config: string,
  configSize: number,
  layers: [string, number][],
) {
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifest,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config, size: configSize },
      layers: layers.map(([d, s]) => ({
        mediaType: "application/vnd.oci.image.layer.v1.tar",
        digest: d,
        size: s,
      })),
    }),
  );
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    body,
    headers: { "Content-Type": ociManifest },
  });
  expect(res.status).toBe(201);
  return { digest: sha256(body), body };
}

/**
 * Makes a blob pullable through the mirror as a client would find it: a manifest naming it is
 * pushed upstream and fetched through the mirror (a mirror serves only blobs its manifests name).
 */
async function referBlob(upstreamUrl: string, mirrorUrl: string, repo: string, layer: string, size: number) {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux" }));
  const configDigest = await pushBlob(upstreamUrl, repo, config);
  await pushManifest(upstreamUrl, repo, "latest", configDigest, config.length, [[layer, size]]);
  const m = await fetch(`${mirrorUrl}/v2/${repo}/manifests/latest`);
  expect(m.status).toBe(200);
  await m.arrayBuffer();
}

async function digestOfResponse(res: Response): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}

/** Every blob file in a Kagami store hashes to its name. */
async function assertStoreIntact(k: RunningKagami): Promise<void> {
  const base = join(k.rootDir, "data", "blobs", "sha256");
  for (const prefix of await readdir(base).catch(() => [] as string[])) {
    for (const name of await readdir(join(base, prefix))) {
      const hash = createHash("sha256");
      for await (const c of createReadStream(join(base, prefix, name))) hash.update(c as Buffer);
      expect(hash.digest("hex"), `cached blob ${name}`).toBe(name);
    }
  }
}

describe.runIf(hasTool("docker-registry"))("pull-through mirror of a distribution upstream", () => {
  let upstream: RunningDistribution;
  let proxy: RegistryProxy;
  let mirror: RunningKagami;

  beforeAll(async () => {
    upstream = await startDistribution();
    proxy = await RegistryProxy.start(upstream.url);
    mirror = await startKagami({
      config: {
        extensions: {
          sync: {
            enable: true,
            registries: [
              {
                urls: [proxy.url],
                onDemand: true,
                tlsVerify: false,
                maxRetries: 1,
                retryDelay: "50ms",
                manifestCheckInterval: "2s",
                negativeCacheTTL: "1s",
              },
            ],
          },
        },
      },
    });
  });
  afterAll(async () => {
    await mirror?.destroy();
    await proxy?.stop();
    await upstream?.stop();
  });

  it("serves an image nobody pushed to it, digests unchanged, and caches every blob", async () => {
    const img = await pushImage(upstream.url, "lib/app", "v1", { layers: 2 });
    const m = await fetch(`${mirror.url}/v2/lib/app/manifests/v1`);
    expect(m.status).toBe(200);
    expect(m.headers.get("docker-content-digest")).toBe(img.digest);
    expect(Buffer.from(await m.arrayBuffer()).equals(img.manifest)).toBe(true);
    for (const d of [img.config, ...img.layers]) {
      const b = await fetch(`${mirror.url}/v2/lib/app/blobs/${d}`);
      expect(b.status).toBe(200);
      expect(await digestOfResponse(b)).toBe(d);
    }
    // A second pull comes from the cache: no new upstream blob fetches.
    const before = proxy.count("GET", "/blobs/");
    for (const d of img.layers) await (await fetch(`${mirror.url}/v2/lib/app/blobs/${d}`)).arrayBuffer();
    expect(proxy.count("GET", "/blobs/")).toBe(before);
  });

  it("makes exactly one upstream fetch of each blob for 32 concurrent pulls of an uncached 100 MB image", async () => {
    const layer = await pushBig(upstream.url, "big/image", 100 * MiB);
    const cfg = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const config = await pushBlob(upstream.url, "big/image", cfg);
    await pushManifest(upstream.url, "big/image", "latest", config, cfg.length, [[layer, 100 * MiB]]);
    proxy.clear();
    const pulls = Array.from({ length: 32 }, async () => {
      const m = await fetch(`${mirror.url}/v2/big/image/manifests/latest`);
      expect(m.status).toBe(200);
      await m.arrayBuffer();
      const [c, l] = await Promise.all([
        fetch(`${mirror.url}/v2/big/image/blobs/${config}`),
        fetch(`${mirror.url}/v2/big/image/blobs/${layer}`),
      ]);
      await c.arrayBuffer();
      return digestOfResponse(l);
    });
    const digests = await Promise.all(pulls);
    expect(new Set(digests)).toEqual(new Set([layer]));
    expect(proxy.count("GET", `/blobs/${layer}`)).toBe(1);
    expect(proxy.count("GET", `/blobs/${config}`)).toBe(1);
    expect(proxy.count("GET", "/manifests/latest")).toBe(1);
    expect(proxy.bytesOut.get(`/v2/big/image/blobs/${layer}`)).toBe(100 * MiB);
  }, 120_000);

  it("streams the first bytes of a big layer long before the upstream has sent it all", async () => {
    const size = 24 * MiB;
    const layer = await pushBig(upstream.url, "slow/image", size);
    proxy.setRules([{ path: layer, fault: { kind: "slow", bytesPerSecond: 12 * MiB } }]);
    try {
      await referBlob(upstream.url, mirror.url, "slow/image", layer, size);
      const got = await fetch(`${mirror.url}/v2/slow/image/blobs/${layer}`);
      expect(got.status).toBe(200);
      expect(got.headers.get("content-length")).toBe(String(size));
      const reader = (got.body as ReadableStream<Uint8Array>).getReader();
      const first = await reader.read();
      expect(first.value?.length).toBeGreaterThan(0);
      const sentWhenFirstByteArrived = proxy.bytesOut.get(`/v2/slow/image/blobs/${layer}`) ?? 0;
      expect(sentWhenFirstByteArrived).toBeLessThan(size / 2);
      const hash = createHash("sha256").update(first.value!);
      for (let r = await reader.read(); !r.done; r = await reader.read()) hash.update(r.value);
      expect(`sha256:${hash.digest("hex")}`).toBe(layer);
    } finally {
      proxy.setRules([]);
    }
  }, 60_000);

  it("keeps fetching into the cache when the client that started the fetch goes away", async () => {
    const size = 16 * MiB;
    const layer = await pushBig(upstream.url, "gone/client", size);
    proxy.setRules([{ path: layer, fault: { kind: "slow", bytesPerSecond: 16 * MiB } }]);
    try {
      await referBlob(upstream.url, mirror.url, "gone/client", layer, size);
      const ac = new AbortController();
      const res = await fetch(`${mirror.url}/v2/gone/client/blobs/${layer}`, { signal: ac.signal });
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      ac.abort();
      const file = join(mirror.rootDir, "data", "blobs", "sha256", layer.slice(7, 9), layer.slice(7));
      await expect.poll(() => existsSync(file), { timeout: 10_000, interval: 200 }).toBe(true);
      const again = await fetch(`${mirror.url}/v2/gone/client/blobs/${layer}`);
      expect(await digestOfResponse(again)).toBe(layer);
      expect(proxy.count("GET", `/blobs/${layer}`)).toBe(1);
    } finally {
      proxy.setRules([]);
    }
  }, 30_000);

  it("sees a tag moved upstream only after manifestCheckInterval", async () => {
    const first = await pushImage(upstream.url, "lib/moving", "stable");
    const a = await fetch(`${mirror.url}/v2/lib/moving/manifests/stable`, { method: "HEAD" });
    expect(a.headers.get("docker-content-digest")).toBe(first.digest);
    const second = await pushImage(upstream.url, "lib/moving", "stable");
    const soon = await fetch(`${mirror.url}/v2/lib/moving/manifests/stable`, { method: "HEAD" });
    expect(soon.headers.get("docker-content-digest")).toBe(first.digest);
    await new Promise((r) => setTimeout(r, 2200));
    const later = await fetch(`${mirror.url}/v2/lib/moving/manifests/stable`, { method: "HEAD" });
    expect(later.headers.get("docker-content-digest")).toBe(second.digest);
    // The check was a HEAD, not a pull.
    expect(proxy.count("HEAD", "/v2/lib/moving/manifests/stable")).toBeGreaterThanOrEqual(1);
  });

  it("never keeps a corrupted or truncated blob, and recovers once upstream behaves", async () => {
    const data = randomBytes(2 * MiB);
    const d = await pushBlob(upstream.url, "lib/faulty", data);
    // A corrupted body can only fail; a truncated one may be resumed with a Range request and
    // recover. Either way a client never receives the whole of a wrong blob.
    for (const fault of [{ kind: "corrupt" as const }, { kind: "truncate" as const, afterBytes: MiB }]) {
      proxy.setRules([{ method: "GET", path: d, fault }]);
      if (fault.kind === "corrupt") await referBlob(upstream.url, mirror.url, "lib/faulty", d, data.length);
      const res = await fetch(`${mirror.url}/v2/lib/faulty/blobs/${d}`).catch((e: Error) => e);
      let body: Buffer | undefined;
      if (!(res instanceof Error) && res.status === 200) {
        body = await res.arrayBuffer().then(
          (b) => Buffer.from(b),
          () => undefined,
        );
      } else if (!(res instanceof Error)) {
        await res.arrayBuffer();
      }
      if (fault.kind === "corrupt")
        expect(body, "a corrupted upstream body must not be served whole").toBeUndefined();
      if (body) expect(sha256(body)).toBe(d);
      proxy.setRules([]);
      await new Promise((r) => setTimeout(r, 300));
      if (fault.kind === "corrupt") {
        // Nothing of it was kept.
        expect(mirror.output()).toMatch(/upstream blob fetch failed/);
      }
    }
    const ok = await fetch(`${mirror.url}/v2/lib/faulty/blobs/${d}`);
    expect(ok.status).toBe(200);
    expect(await digestOfResponse(ok)).toBe(d);
    await assertStoreIntact(mirror);
  });

  it("answers a spec error, not a cut connection, when a blob fetch fails before its first byte", async () => {
    const data = randomBytes(256 * 1024);
    const d = await pushBlob(upstream.url, "lib/empty-body", data);
    proxy.setRules([{ method: "GET", path: d, fault: { kind: "truncate", afterBytes: 0 } }]);
    try {
      await referBlob(upstream.url, mirror.url, "lib/empty-body", d, data.length);
      const res = await fetch(`${mirror.url}/v2/lib/empty-body/blobs/${d}`);
      expect(res.status).toBe(502);
      const body = (await res.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]!.code).toBe("BLOB_UNKNOWN");
      expect(body.errors[0]!.message).toContain(proxy.url);
      expect(res.headers.get("docker-content-digest")).toBeNull();
    } finally {
      proxy.setRules([]);
    }
    await new Promise((r) => setTimeout(r, 300));
    const ok = await fetch(`${mirror.url}/v2/lib/empty-body/blobs/${d}`);
    expect(await digestOfResponse(ok)).toBe(d);
  });

  it("names the upstream and its failure on a miss, and serves cached content when upstream is down", async () => {
    proxy.setRules([{ path: "/lib/broken/", fault: { kind: "status", status: 500 } }]);
    const miss = await fetch(`${mirror.url}/v2/lib/broken/manifests/v1`);
    expect(miss.status).toBe(502);
    const body = (await miss.json()) as { errors: { message: string }[] };
    expect(body.errors[0]!.message).toContain(proxy.url);
    proxy.setRules([]);

    const notThere = await fetch(`${mirror.url}/v2/lib/absent/manifests/v9`);
    expect(notThere.status).toBe(404);
    expect(((await notThere.json()) as { errors: { message: string }[] }).errors[0]!.message).toMatch(
      /neither cached here nor at/,
    );
    // A flood of requests for the missing tag within negativeCacheTTL asks upstream once.
    await Promise.all(
      Array.from({ length: 20 }, async () =>
        (await fetch(`${mirror.url}/v2/lib/absent/manifests/v9`)).arrayBuffer(),
      ),
    );
    expect(proxy.count("GET", "/v2/lib/absent/manifests/v9")).toBe(1);

    // Let the prefetch of lib/app finish, then take the upstream away.
    await new Promise((r) => setTimeout(r, 2500));
    proxy.down = true;
    try {
      const m = await fetch(`${mirror.url}/v2/lib/app/manifests/v1`);
      expect(m.status).toBe(200);
      const manifest = (await m.json()) as { layers: { digest: string }[]; config: { digest: string } };
      for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
        const b = await fetch(`${mirror.url}/v2/lib/app/blobs/${d}`);
        expect(b.status).toBe(200);
        expect(await digestOfResponse(b)).toBe(d);
      }
      expect(mirror.output()).toMatch(/serving the cached manifest, possibly stale/);
      const down = await fetch(`${mirror.url}/v2/lib/never/manifests/v1`);
      expect(down.status).toBe(502);
    } finally {
      proxy.down = false;
    }
    await assertStoreIntact(mirror);
  });
});
