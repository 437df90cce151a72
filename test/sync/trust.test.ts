/**
 * Mirror trust (issue 11, items 1–3): one name reaches one source, and no second name, alias or
 * shared fetch sidesteps the access rules. Real distribution upstreams behind counting proxies.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { errorCode, type PushedImage, pushBlob, pushImage } from "../helpers/push.ts";
import { RegistryProxy } from "../helpers/registry-proxy.ts";
import { hasTool } from "../helpers/tools.ts";

const MiB = 1024 * 1024;
const alice = basic("alice", "wonderland");

async function status(url: string, auth?: string, method = "GET"): Promise<number> {
  const res = await fetch(url, { method, headers: auth ? { Authorization: auth } : {} });
  await res.arrayBuffer().catch(() => undefined);
  return res.status;
}

describe.runIf(hasTool("docker-registry"))("mirror trust: names, aliases and shared fetches", () => {
  let upstream: RunningDistribution;
  let other: RunningDistribution;
  let proxy: RegistryProxy;
  let otherProxy: RegistryProxy;
  const servers: RunningKagami[] = [];
  let priv: PushedImage;
  let pub: PushedImage;
  let bigLayer: string;

  async function mirror(registries: Record<string, unknown>[], http: Record<string, unknown> = {}) {
    const k = await startKagami({
      config: { http, extensions: { sync: { enable: true, registries } } },
    });
    servers.push(k);
    return k;
  }
  async function htpasswdFile(): Promise<string> {
    const path = join(await mkdtemp(join(tmpdir(), "kagami-trust-")), "htpasswd");
    writeHtpasswd(path, [["alice", "wonderland"]]);
    return path;
  }
  const reg = (url: string, extra: Record<string, unknown> = {}) => ({
    urls: [url],
    onDemand: true,
    tlsVerify: false,
    maxRetries: 0,
    retryDelay: "10ms",
    negativeCacheTTL: "0s",
    ...extra,
  });

  beforeAll(async () => {
    [upstream, other] = await Promise.all([startDistribution(), startDistribution()]);
    proxy = await RegistryProxy.start(upstream.url);
    otherProxy = await RegistryProxy.start(other.url);
    priv = await pushImage(upstream.url, "private/x", "v1", { layers: 2 });
    pub = await pushImage(upstream.url, "public/y", "v1");
    // A private image with a big layer, to join while it is being fetched.
    const layer = randomBytes(8 * MiB);
    bigLayer = await pushBlob(upstream.url, "private/big", layer);
    const config = Buffer.from("{}");
    const configDigest = await pushBlob(upstream.url, "private/big", config);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: 2 },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: bigLayer, size: layer.length }],
    });
    const put = await fetch(`${upstream.url}/v2/private/big/manifests/v1`, {
      method: "PUT",
      body: manifest,
      headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
    });
    expect(put.status).toBe(201);
    // The same repository name on a second registry, with other content.
    await pushImage(other.url, "library/alpine", "3.20");
    // A repository named after another registry's host, as some mirrors lay theirs out.
    await pushImage(other.url, "docker.io/library/alpine", "3.20");
    await pushImage(other.url, "library/alpine", "edge");
    await pushImage(upstream.url, "library/alpine", "edge");
  }, 120_000);

  afterAll(async () => {
    for (const k of servers) await k.destroy();
    await proxy?.stop();
    await otherProxy?.stop();
    await upstream?.stop();
    await other?.stop();
  });

  describe("access rules hold under every name of a mirrored repository", () => {
    let k: RunningKagami;
    let hostName: string;
    let nsHost: string;

    beforeAll(async () => {
      k = await mirror([reg(proxy.url)], {
        auth: { htpasswd: { path: await htpasswdFile() } },
        accessControl: {
          repositories: {
            // Signed-in users get nothing from `**`: alice reads private/** by her own grant only,
            // under every name of it.
            "**": { anonymousPolicy: ["read"] },
            "private/**": { policies: [{ users: ["alice"], actions: ["read"] }] },
          },
        },
      });
      nsHost = new URL(proxy.url).host;
      hostName = nsHost.replace(":", "-");
    });

    it("refuses anonymous callers under the direct, the ns and the host-prefixed name alike", async () => {
      const names = [
        (p: string) => `${k.url}/v2/private/x/${p}`,
        (p: string) => `${k.url}/v2/private/x/${p}${p.includes("?") ? "&" : "?"}ns=${nsHost}`,
        (p: string) => `${k.url}/v2/${hostName}/private/x/${p}`,
      ];
      for (const url of names) {
        for (const path of [
          "manifests/v1",
          "tags/list",
          `blobs/${priv.layers[0]}`,
          `referrers/${priv.digest}`,
        ]) {
          expect(await status(url(path)), url(path)).toBe(401);
          expect(await status(url(path), undefined, "HEAD"), `HEAD ${url(path)}`).toBe(401);
        }
      }
      // Alice may read it under each name.
      for (const url of names) {
        expect(await status(url("manifests/v1"), alice), url("manifests/v1")).toBe(200);
        expect(await status(url(`blobs/${priv.layers[0]}`), alice)).toBe(200);
        expect(await status(url("tags/list"), alice)).toBe(200);
      }
      // The public image stays public under each name.
      expect(await status(`${k.url}/v2/public/y/manifests/v1?ns=${nsHost}`)).toBe(200);
      expect(await status(`${k.url}/v2/${hostName}/public/y/manifests/v1`)).toBe(200);
      // The catalog does not list the host-prefixed copy of a private repository to anonymous callers.
      const catalog = (await (await fetch(`${k.url}/v2/_catalog`)).json()) as { repositories: string[] };
      expect(catalog.repositories.filter((r) => r.includes("private"))).toEqual([]);
      expect(catalog.repositories).toContain(`${hostName}/public/y`);
    });

    it("serves a blob only in repositories whose own manifests name it, and never joins another repository's fetch", async () => {
      // Slow enough that the layer is still on its way (the mirror starts it behind the manifest).
      proxy.setRules([{ path: bigLayer, fault: { kind: "slow", bytesPerSecond: 4 * MiB } }]);
      try {
        proxy.clear();
        expect(await status(`${k.url}/v2/private/big/manifests/v1`, alice)).toBe(200);
        const authorised = fetch(`${k.url}/v2/private/big/blobs/${bigLayer}`, {
          headers: { Authorization: alice },
        });
        await new Promise((r) => setTimeout(r, 300));
        // While the private layer is on its way, a public name must not hand it out.
        for (const name of ["public/y", `${hostName}/public/y`]) {
          const res = await fetch(`${k.url}/v2/${name}/blobs/${bigLayer}`);
          expect(res.status, name).toBe(404);
          expect(await errorCode(res)).toBe("BLOB_UNKNOWN");
          expect(await status(`${k.url}/v2/${name}/blobs/${bigLayer}`, undefined, "HEAD")).toBe(404);
        }
        expect(proxy.count("GET", `/blobs/${bigLayer}`), JSON.stringify(proxy.log)).toBe(1);
        const body = await (await authorised).arrayBuffer();
        expect(body.byteLength).toBe(8 * MiB);
      } finally {
        proxy.setRules([]);
      }
      // Nor afterwards, when the bytes are in the store.
      expect(await status(`${k.url}/v2/public/y/blobs/${bigLayer}`)).toBe(404);
      // A digest that no manifest of the repository names never reaches the upstream.
      expect(proxy.count("GET", "/v2/public/y/blobs/")).toBe(0);
      expect(proxy.count("HEAD", "/v2/public/y/blobs/")).toBe(0);
      const random = `sha256:${"ab".repeat(32)}`;
      expect(await status(`${k.url}/v2/public/y/blobs/${random}`)).toBe(404);
      expect(proxy.count("GET", `/blobs/${random}`) + proxy.count("HEAD", `/blobs/${random}`)).toBe(0);
      // A repository that does name the blob gets it from the store, without another upstream fetch.
      expect(await status(`${k.url}/v2/${hostName}/private/big/manifests/v1`, alice)).toBe(200);
      expect(await status(`${k.url}/v2/${hostName}/private/big/blobs/${bigLayer}`, alice)).toBe(200);
      expect(proxy.count("GET", `/blobs/${bigLayer}`)).toBe(1);
      // The public image's own blobs are served as before.
      expect(await status(`${k.url}/v2/public/y/manifests/v1`)).toBe(200);
      expect(await status(`${k.url}/v2/public/y/blobs/${pub.layers[0]}`)).toBe(200);
    });
  });

  it("holds when two content rules of one upstream give an image two local names", async () => {
    const nsHost = new URL(proxy.url).host;
    const k = await mirror(
      [
        reg(proxy.url, {
          content: [
            { prefix: "**", destination: "/all" },
            { prefix: "private/**", destination: "/p", stripPrefix: true },
          ],
        }),
      ],
      {
        auth: { htpasswd: { path: await htpasswdFile() } },
        accessControl: {
          repositories: {
            "**": { anonymousPolicy: ["read"] },
            "p/**": { policies: [{ users: ["alice"], actions: ["read"] }] },
          },
        },
      },
    );
    for (const name of ["p/x", "all/private/x", `${nsHost.replace(":", "-")}/private/x`]) {
      expect(await status(`${k.url}/v2/${name}/manifests/v1`), name).toBe(401);
      expect(await status(`${k.url}/v2/${name}/manifests/v1`, alice), name).toBe(200);
    }
    expect(await status(`${k.url}/v2/private/x/manifests/v1?ns=${nsHost}`)).toBe(401);
    expect(await status(`${k.url}/v2/all/public/y/manifests/v1`)).toBe(200);
  });

  describe("containerd's ns reaches only the registry it names", () => {
    it("answers ns for a host without an upstream with a fast 404, never from another registry", async () => {
      const k = await mirror([reg(otherProxy.url)]);
      otherProxy.clear();
      const res = await fetch(`${k.url}/v2/library/alpine/manifests/3.20?ns=docker.io`);
      expect(res.status).toBe(404);
      expect(await errorCode(res)).toBe("MANIFEST_UNKNOWN");
      expect(await status(`${k.url}/v2/library/alpine/blobs/sha256:${"cd".repeat(32)}?ns=docker.io`)).toBe(
        404,
      );
      expect(otherProxy.count("GET", "/v2/") + otherProxy.count("HEAD", "/v2/")).toBe(0);
      // The bare name is still the catch-all's.
      expect(await status(`${k.url}/v2/library/alpine/manifests/3.20`)).toBe(200);
      // Nor is it answered from what the catch-all was asked for under the host's name.
      expect(await status(`${k.url}/v2/docker.io/library/alpine/manifests/3.20`)).toBe(200);
      expect(await status(`${k.url}/v2/library/alpine/manifests/3.20?ns=docker.io`)).toBe(404);
      // A malformed ns is refused, not guessed at.
      const bad = await fetch(`${k.url}/v2/library/alpine/manifests/3.20?ns=a/../b`);
      expect(bad.status).toBe(400);
      expect(await errorCode(bad)).toBe("NAME_INVALID");
    });

    it.each([
      ["no content rules", {}],
      ["a ** content rule", { content: [{ prefix: "**" }] }],
    ])(
      "does not fall through to another registry (one with %s) when the named host's content rules do not match",
      async (_, catchAll) => {
        const nsHost = new URL(proxy.url).host;
        const k = await mirror([
          reg(proxy.url, { content: [{ prefix: "private/**" }] }),
          reg(otherProxy.url, catchAll),
        ]);
        otherProxy.clear();
        expect(await status(`${k.url}/v2/library/alpine/manifests/3.20?ns=${nsHost}`)).toBe(404);
        // The host-prefixed name without ns does not reach the catch-all either.
        expect(await status(`${k.url}/v2/${nsHost.replace(":", "-")}/library/alpine/manifests/3.20`)).toBe(
          404,
        );
        expect(otherProxy.count("GET", "/manifests/") + otherProxy.count("HEAD", "/manifests/")).toBe(0);
        // What the named host's rules do include is served.
        expect(await status(`${k.url}/v2/private/x/manifests/v1?ns=${nsHost}`)).toBe(200);
      },
    );

    it("does not look a tag refused by one upstream's filter up at another", async () => {
      const k = await mirror([
        reg(proxy.url, { content: [{ prefix: "library/**", tags: { regex: "^3\\." } }] }),
        reg(otherProxy.url),
      ]);
      otherProxy.clear();
      const res = await fetch(`${k.url}/v2/library/alpine/manifests/edge`);
      expect(res.status).toBe(404);
      const body = (await res.json()) as { errors: { message: string }[] };
      expect(body.errors[0]!.message).toMatch(/not mirrored/);
      expect(otherProxy.count("GET", "/manifests/") + otherProxy.count("HEAD", "/manifests/")).toBe(0);
    });
  });
});
