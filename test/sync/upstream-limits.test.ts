import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseConfig, type SyncRegistryConfig } from "../../src/config/config.ts";
import { Stores } from "../../src/registry/stores.ts";
import type { RemoteRegistry } from "../../src/remote/remote.ts";
import { backoffDelay } from "../../src/remote/retry.ts";
import { Mirror } from "../../src/sync/mirror.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { type PushedImage, pushImage } from "../helpers/push.ts";
import { type FaultRule, RegistryProxy } from "../helpers/registry-proxy.ts";
import { hasTool } from "../helpers/tools.ts";

/** Milliseconds between the arrivals of the requests whose path contains `part`. */
function gaps(proxy: RegistryProxy, part: string): number[] {
  const at = proxy.log.filter((r) => r.path.includes(part)).map((r) => r.at);
  return at.slice(1).map((t, i) => t - at[i]!);
}

const fail503 = (times: number): FaultRule => ({
  method: "GET",
  path: "/manifests/",
  fault: { kind: "status", status: 503 },
  times,
});

async function readAll(upstream: RemoteRegistry, repo: string, digest: string): Promise<number> {
  const blob = await upstream.getBlob(repo, digest);
  if (!blob) throw new Error(`blob ${digest} not found`);
  let n = 0;
  for await (const chunk of blob.stream) n += (chunk as Buffer).length;
  return n;
}

describe.runIf(hasTool("docker-registry"))(
  "mirror retries and request limits against a distribution upstream",
  () => {
    let upstream: RunningDistribution;
    let proxy: RegistryProxy;
    let image: PushedImage;
    const cleanups: (() => Promise<void>)[] = [];

    beforeAll(async () => {
      upstream = await startDistribution();
      proxy = await RegistryProxy.start(upstream.url);
      image = await pushImage(upstream.url, "lib/app", "v1", { layers: 4 });
    });
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
      proxy.setRules([]);
      proxy.clear();
    });
    afterAll(async () => {
      await proxy?.stop();
      await upstream?.stop();
    });

    /** A served Kagami mirroring the proxy with these zot registry fields. */
    async function serveMirror(fields: Record<string, unknown>): Promise<RunningKagami> {
      const k = await startKagami({
        config: {
          extensions: {
            sync: {
              enable: true,
              registries: [{ urls: [proxy.url], onDemand: true, tlsVerify: false, ...fields }],
            },
          },
        },
      });
      cleanups.push(() => k.destroy());
      return k;
    }

    /**
     * The mirror's client for the proxy, built by Mirror.upstream() from a zot config parsed as
     * `kagami serve` parses it, with `runtime` (zot's sync runtime fields) set on the parsed registry.
     */
    async function mirrorUpstream(
      fields: Record<string, unknown>,
      runtime: Partial<SyncRegistryConfig> = {},
    ): Promise<RemoteRegistry> {
      const dir = await mkdtemp(join(tmpdir(), "kagami-limits-"));
      const { config } = parseConfig({
        storage: { rootDirectory: dir },
        extensions: { sync: { registries: [{ urls: [proxy.url], tlsVerify: false, ...fields }] } },
      });
      Object.assign(config.sync!.registries[0]!, runtime);
      const stores = await Stores.open(config.storage);
      const mirror = new Mirror(config.sync!, stores, pino({ level: "silent" }));
      cleanups.push(async () => {
        await mirror.close();
        stores.close();
        await rm(dir, { recursive: true, force: true });
      });
      return mirror.upstream(0);
    }

    it("waits retryDelay between attempts, every time, when maxRetryDelay is not set (zot's fixed interval)", async () => {
      const k = await serveMirror({ maxRetries: 3, retryDelay: "400ms" });
      proxy.setRules([fail503(3)]);
      const res = await fetch(`${k.url}/v2/lib/app/manifests/v1`);
      expect(res.status).toBe(200);
      expect(res.headers.get("docker-content-digest")).toBe(image.digest);
      const waits = gaps(proxy, "/manifests/v1");
      expect(waits).toHaveLength(3);
      for (const w of waits) expect(w).toBeGreaterThanOrEqual(380);
      // Fixed, not growing: the last wait is about the first (doubling would make it four times as long).
      expect(Math.max(...waits)).toBeLessThan(Math.min(...waits) * 1.8);
    }, 30_000);

    it("doubles the wait from twice retryDelay up to maxRetryDelay when that is set", async () => {
      const k = await serveMirror({ maxRetries: 4, retryDelay: "200ms", maxRetryDelay: "800ms" });
      proxy.setRules([fail503(4)]);
      const res = await fetch(`${k.url}/v2/lib/app/manifests/v1`);
      expect(res.status).toBe(200);
      const waits = gaps(proxy, "/manifests/v1");
      expect(waits).toHaveLength(4);
      expect(waits[0]).toBeGreaterThanOrEqual(380);
      expect(waits[1]).toBeGreaterThanOrEqual(780);
      expect(waits[1]).toBeGreaterThan(waits[0]! * 1.5);
      // Capped: the third and fourth wait no longer than the second.
      expect(waits[3]).toBeLessThan(waits[1]! * 1.5);
    }, 30_000);

    it("gives up after maxRetries retries with the upstream's answer", async () => {
      const k = await serveMirror({ maxRetries: 2, retryDelay: "100ms", negativeCacheTTL: "1ms" });
      proxy.setRules([fail503(100)]);
      const res = await fetch(`${k.url}/v2/lib/app/manifests/v1`);
      expect(res.status).toBeGreaterThanOrEqual(500);
      const body = (await res.json()) as { errors: { message: string }[] };
      expect(body.errors[0]!.message).toMatch(/503/);
      expect(proxy.log.filter((r) => r.path.includes("/manifests/v1"))).toHaveLength(3);
    }, 30_000);

    it("honours 429 Retry-After over a shorter retryDelay", async () => {
      const k = await serveMirror({ maxRetries: 2, retryDelay: "50ms" });
      proxy.setRules([
        {
          method: "GET",
          path: "/manifests/",
          fault: { kind: "status", status: 429, retryAfter: 1 },
          times: 1,
        },
      ]);
      const res = await fetch(`${k.url}/v2/lib/app/manifests/v1`);
      expect(res.status).toBe(200);
      const waits = gaps(proxy, "/manifests/v1");
      expect(waits).toHaveLength(1);
      expect(waits[0]).toBeGreaterThanOrEqual(950);
    }, 30_000);

    it("takes zot's retryDelay: 5m as five minutes between attempts, not a 30 s cap", async () => {
      const u = await mirrorUpstream({ maxRetries: 3, retryDelay: "5m" });
      for (const attempt of [0, 1, 2]) expect(backoffDelay(u.retry, attempt)).toBe(300_000);
    });

    it("reqConcurrent: 1 never has two requests at the upstream at once", async () => {
      const blobs = [image.config, ...image.layers];
      proxy.setRules([{ path: "/blobs/", fault: { kind: "delay", ms: 150 } }]);
      const unlimited = await mirrorUpstream({ maxRetries: 0, retryDelay: "10ms" });
      await Promise.all(blobs.map((d) => readAll(unlimited, "lib/app", d)));
      // Without the limit the same pulls overlap at the upstream, so the check below can fail.
      expect(proxy.maxInFlight).toBeGreaterThan(1);
      proxy.clear();
      const limited = await mirrorUpstream({ maxRetries: 0, retryDelay: "10ms" }, { reqConcurrent: 1 });
      const sizes = await Promise.all(blobs.map((d) => readAll(limited, "lib/app", d)));
      expect(sizes.every((n) => n > 0)).toBe(true);
      expect(proxy.log.length).toBeGreaterThanOrEqual(blobs.length);
      expect(proxy.maxInFlight).toBe(1);
    }, 30_000);

    it("reqConcurrent: 1 frees its slot after every kind of answer (HEAD, manifest, 404, blob)", async () => {
      const u = await mirrorUpstream({ maxRetries: 0, retryDelay: "10ms" }, { reqConcurrent: 1 });
      const pull = async () => {
        expect((await u.headManifest("lib/app", "v1"))?.digest).toBe(image.digest);
        expect(await u.getManifest("lib/app", "v1")).toBeDefined();
        expect(await u.getManifest("lib/app", "missing")).toBeUndefined();
        expect(await u.blobSize("lib/app", image.config)).toBeGreaterThan(0);
        expect(await readAll(u, "lib/app", image.layers[0]!)).toBe(1024);
      };
      await pull();
      await Promise.all([pull(), pull(), pull()]);
      expect(proxy.maxInFlight).toBe(1);
    }, 30_000);

    it("reqPerSec spaces the requests it starts", async () => {
      const u = await mirrorUpstream({ maxRetries: 0, retryDelay: "10ms" }, { reqPerSec: 5 });
      const blobs = [image.config, ...image.layers];
      await Promise.all(blobs.map((d) => u.blobSize("lib/app", d)));
      const at = proxy.log.map((r) => r.at);
      expect(at).toHaveLength(blobs.length);
      // Five requests at five a second: the last starts at least 0.8 s after the first.
      expect(at[at.length - 1]! - at[0]!).toBeGreaterThanOrEqual(760);
    }, 30_000);

    it("syncTimeout bounds one request, body included, and says which setting cut it", async () => {
      const u = await mirrorUpstream({ maxRetries: 0, retryDelay: "10ms" }, { syncTimeoutMs: 800 });
      proxy.setRules([
        { path: "/manifests/", fault: { kind: "delay", ms: 20_000 } },
        { path: "/blobs/", fault: { kind: "stall", afterBytes: 100 } },
      ]);
      const within = <T>(p: Promise<T>) =>
        Promise.race([
          p,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error("no time limit applied")), 8000),
          ),
        ]);
      await expect(within(u.getManifest("lib/app", "v1"))).rejects.toThrow(/syncTimeout/);
      await expect(within(readAll(u, "lib/app", image.layers[0]!))).rejects.toThrow(/syncTimeout/);
    }, 30_000);

    it("maxIdleConnsPerHost keeps only that many idle connections to the upstream", async () => {
      const blobs = [image.config, ...image.layers];
      proxy.setRules([{ path: "/blobs/", fault: { kind: "delay", ms: 150 } }]);
      const settle = () => new Promise((r) => setTimeout(r, 200));
      const pooled = await mirrorUpstream({ maxRetries: 0, retryDelay: "10ms" });
      await Promise.all(blobs.map((d) => readAll(pooled, "lib/app", d)));
      await settle();
      const keptByDefault = proxy.openConnections;
      expect(keptByDefault).toBeGreaterThan(1);
      await cleanups.pop()!();
      await settle();
      const lean = await mirrorUpstream({ maxRetries: 0, retryDelay: "10ms" }, { maxIdleConnsPerHost: 1 });
      await Promise.all(blobs.map((d) => readAll(lean, "lib/app", d)));
      await settle();
      expect(proxy.openConnections).toBe(1);
    }, 30_000);
  },
);
