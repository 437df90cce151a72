import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UpstreamError } from "../../src/remote/errors.ts";
import { RemoteRegistry } from "../../src/remote/remote.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { freePort } from "../helpers/net.ts";
import { imageManifest, ociManifest, type PushedImage, pushImage, sha256 } from "../helpers/push.ts";
import { type FaultRule, RegistryProxy } from "../helpers/registry-proxy.ts";
import { startTokenIssuer, type TokenIssuer } from "../helpers/token-issuer.ts";
import { hasTool } from "../helpers/tools.ts";

const fast = { maxRetries: 1, retryDelay: 20, maxRetryDelay: 50, connectTimeout: 2000 };

/** Requests answered with a Bearer challenge naming `realm` (all of them, or the first `times`). */
function challengeWith(realm: string, times?: number): FaultRule[] {
  const headers = { "www-authenticate": `Bearer realm="${realm}",service="upstream"` };
  return [{ path: "/v2/", fault: { kind: "status", status: 401, headers }, ...(times ? { times } : {}) }];
}

/** A realm on a closed port of this host: the token service is gone. */
const deadRealm = (port: number) => challengeWith(`http://127.0.0.1:${port}/token`);

/** Copies a small image into a registry that wants tokens (pushImage speaks no auth). */
async function pushThroughTokens(url: string, repo: string, tag: string): Promise<PushedImage> {
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const layer = Buffer.from("challenge recovery layer");
  const manifest = imageManifest(config, [layer]);
  const remote = new RemoteRegistry({ urls: [url], ...fast });
  try {
    for (const b of [config, layer]) await remote.putBlob(repo, sha256(b), Readable.from([b]), b.length);
    await remote.putManifest(repo, tag, manifest, ociManifest);
  } finally {
    await remote.close();
  }
  return { digest: sha256(manifest), manifest, config: sha256(config), layers: [sha256(layer)] };
}

describe.runIf(hasTool("docker-registry") && hasTool("openssl"))(
  "an upstream's Bearer challenge naming an unreachable token service",
  () => {
    let dir: string;
    let closedPort: number;
    let plain: RunningDistribution;
    let issuer: TokenIssuer;
    let guarded: RunningDistribution;
    let plainImage: PushedImage;
    let guardedImage: PushedImage;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "kagami-challenge-"));
      closedPort = await freePort();
      plain = await startDistribution();
      issuer = await startTokenIssuer({ dir });
      guarded = await startDistribution({ extraYaml: issuer.yaml });
      plainImage = await pushImage(plain.url, "lib/app", "v1");
      guardedImage = await pushThroughTokens(guarded.url, "lib/app", "v1");
    });
    afterAll(async () => {
      await guarded?.stop();
      await issuer?.stop();
      await plain?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    /** A Kagami mirror (onDemand) of `proxy`, remembering no failure so each pull asks upstream. */
    async function mirrorOf(proxy: RegistryProxy): Promise<RunningKagami> {
      return startKagami({
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
                  retryDelay: "20ms",
                  negativeCacheTTL: "0s",
                },
              ],
            },
          },
        },
      });
    }

    async function expectBadGateway(res: Response): Promise<void> {
      expect(res.status).toBe(502);
      const body = (await res.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]!.message).toContain(`token service http://127.0.0.1:${closedPort}`);
      expect(body.errors[0]!.message).toMatch(/ECONNREFUSED/);
    }

    it("mirror: fails the pull while the realm is dead, then pulls once the upstream drops auth", async () => {
      const proxy = await RegistryProxy.start(plain.url, deadRealm(closedPort));
      const mirror = await mirrorOf(proxy);
      try {
        await expectBadGateway(await fetch(`${mirror.url}/v2/lib/app/manifests/v1`));
        proxy.setRules([]);
        proxy.clear();
        const res = await fetch(`${mirror.url}/v2/lib/app/manifests/v1`);
        expect(res.status, await res.clone().text()).toBe(200);
        expect(res.headers.get("docker-content-digest")).toBe(plainImage.digest);
        expect(proxy.count("GET", "/v2/lib/app/manifests/v1")).toBeGreaterThan(0);
      } finally {
        await mirror.destroy();
        await proxy.stop();
      }
    });

    it("mirror: fails the pull while the realm is dead, then follows the upstream's new, working realm", async () => {
      const proxy = await RegistryProxy.start(guarded.url, deadRealm(closedPort));
      const mirror = await mirrorOf(proxy);
      try {
        await expectBadGateway(await fetch(`${mirror.url}/v2/lib/app/manifests/v1`));
        // The real distribution behind answers from now on: a challenge naming the live issuer.
        proxy.setRules([]);
        const tokensBefore = issuer.requests.length;
        const res = await fetch(`${mirror.url}/v2/lib/app/manifests/v1`);
        expect(res.status, await res.clone().text()).toBe(200);
        expect(res.headers.get("docker-content-digest")).toBe(guardedImage.digest);
        expect(issuer.requests.length).toBeGreaterThan(tokensBefore);
        const layer = await fetch(`${mirror.url}/v2/lib/app/blobs/${guardedImage.layers[0]}`);
        expect(layer.status).toBe(200);
        expect(sha256(Buffer.from(await layer.arrayBuffer()))).toBe(guardedImage.layers[0]);
      } finally {
        await mirror.destroy();
        await proxy.stop();
      }
    });

    it("RemoteRegistry: a token service that went away is not asked forever once the upstream stops challenging", async () => {
      // First a working realm, so the challenge is learned and a token cached...
      const shortIssuer = await startTokenIssuer({ dir: mkdtempSync(join(dir, "short-")), expiresIn: 1 });
      const proxy = await RegistryProxy.start(plain.url, challengeWith(shortIssuer.realm, 1));
      const remote = new RemoteRegistry({ urls: [proxy.url], ...fast });
      try {
        expect((await remote.headManifest("lib/app", "v1"))?.digest).toBe(plainImage.digest);
        expect(shortIssuer.requests).toHaveLength(1);
        // ...then the token service dies and the token runs out; the upstream wants no auth now.
        await shortIssuer.stop();
        await new Promise((r) => setTimeout(r, 1100));
        expect((await remote.headManifest("lib/app", "v1"))?.digest).toBe(plainImage.digest);
      } finally {
        await remote.close();
        await proxy.stop();
      }
    });

    it("RemoteRegistry: a dead realm fails with a typed error naming it, and is asked again after the next 401", async () => {
      const proxy = await RegistryProxy.start(plain.url, deadRealm(closedPort));
      const remote = new RemoteRegistry({ urls: [proxy.url], ...fast });
      try {
        const err = await remote.getManifest("lib/app", "v1").catch((e: unknown) => e);
        expect(err).toBeInstanceOf(UpstreamError);
        expect((err as UpstreamError).status).toBe(502);
        expect((err as UpstreamError).message).toContain(`token service http://127.0.0.1:${closedPort}`);
        proxy.setRules([]);
        expect((await remote.getManifest("lib/app", "v1"))?.digest).toBe(plainImage.digest);
      } finally {
        await remote.close();
        await proxy.stop();
      }
    });
  },
);
