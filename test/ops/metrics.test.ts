import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, repoRoot, startKagami } from "../helpers/kagami.ts";
import { parsePrometheusText, type Scrape } from "../helpers/prom-text.ts";
import { type PushedImage, pushImage } from "../helpers/push.ts";
import { RegistryProxy } from "../helpers/registry-proxy.ts";
import { hasTool } from "../helpers/tools.ts";

const metricsOn = { metrics: { enable: true, prometheus: { path: "/metrics" } } };

async function scrape(url: string, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await fetch(`${url}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.text());
}

async function drain(res: Response): Promise<Response> {
  await res.arrayBuffer();
  return res;
}

describe.runIf(hasTool("docker-registry"))("metrics after a push, a mirrored pull and a sync run", () => {
  let upstream: RunningDistribution;
  let onDemand: RegistryProxy;
  let polled: RegistryProxy;
  let k: RunningKagami;
  let app: PushedImage;
  let synced: PushedImage;

  beforeAll(async () => {
    upstream = await startDistribution();
    app = await pushImage(upstream.url, "lib/app", "v1", { layers: 2 });
    await pushImage(upstream.url, "lib/joined", "v1");
    synced = await pushImage(upstream.url, "team/sync", "v1");
    // Two proxies in front of the one upstream: each is its own upstream host in the metrics, and
    // each counts what it was asked, which the upstream metrics must match.
    onDemand = await RegistryProxy.start(upstream.url);
    polled = await RegistryProxy.start(upstream.url);
    k = await startKagami({
      config: {
        extensions: {
          ...metricsOn,
          sync: {
            enable: true,
            registries: [
              {
                urls: [onDemand.url],
                onDemand: true,
                tlsVerify: false,
                maxRetries: 0,
                retryDelay: "50ms",
                manifestCheckInterval: "1s",
                content: [{ prefix: "/lib/**" }],
              },
              {
                urls: [polled.url],
                onDemand: false,
                tlsVerify: false,
                pollInterval: "1h",
                content: [{ prefix: "/team/sync" }],
              },
            ],
          },
        },
      },
    });
  }, 60_000);
  afterAll(async () => {
    await k?.destroy();
    await onDemand?.stop();
    await polled?.stop();
    await upstream?.stop();
  });

  it("parses as the text format and names what Kagami is", async () => {
    const m = await scrape(k.url);
    expect(m.types.get("kagami_http_requests_total")).toBe("counter");
    expect(m.types.get("kagami_http_request_duration_seconds")).toBe("histogram");
    expect(m.types.get("kagami_storage_bytes")).toBe("gauge");
    expect(m.series("kagami_build_info")[0]!.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(m.sum("process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  it("counts a push by endpoint kind, its bytes, and the repository's storage", async () => {
    const before = await scrape(k.url);
    const pushed = await pushImage(k.url, "local/app", "v1", { layers: 2 });
    const m = await scrape(k.url);
    const delta = (name: string, labels: Record<string, string>) =>
      m.sum(name, labels) - before.sum(name, labels);
    // pushImage: one monolithic POST per blob (config and two layers), then the manifest PUT.
    expect(delta("kagami_http_requests_total", { kind: "upload", method: "POST", status: "201" })).toBe(3);
    expect(delta("kagami_http_requests_total", { kind: "manifest", method: "PUT", status: "201" })).toBe(1);
    expect(delta("kagami_http_request_duration_seconds_count", { kind: "manifest", method: "PUT" })).toBe(1);
    const configSize = (await drain(await fetch(`${k.url}/v2/local/app/blobs/${pushed.config}`))).headers.get(
      "content-length",
    );
    const blobBytes = Number(configSize) + 2 * 1024;
    expect(delta("kagami_http_request_bytes_total", { kind: "upload" })).toBe(blobBytes);
    expect(delta("kagami_http_request_bytes_total", { kind: "manifest" })).toBe(pushed.manifest.length);
    const repo = { repository: "local/app" };
    expect(m.sum("kagami_storage_bytes", repo)).toBe(blobBytes + pushed.manifest.length);
    expect(m.sum("kagami_storage_blobs", repo)).toBe(3);
    expect(m.sum("kagami_storage_manifests", repo)).toBe(1);
    expect(m.sum("kagami_storage_tags", repo)).toBe(1);
    // The config GET just made: answered whole, so its bytes count out.
    const after = await scrape(k.url);
    expect(
      after.sum("kagami_http_response_bytes_total", { kind: "blob" }) -
        m.sum("kagami_http_response_bytes_total", { kind: "blob" }),
    ).toBe(Number(configSize));
  });

  it("counts a mirrored pull: misses, hits, the freshness re-check, negative cache and upstream traffic", async () => {
    const before = await scrape(k.url);
    const d = (m: Scrape, name: string, labels: Record<string, string> = {}) =>
      m.sum(name, labels) - before.sum(name, labels);
    onDemand.clear();

    expect((await drain(await fetch(`${k.url}/v2/lib/app/manifests/v1`))).status).toBe(200);
    // The blobs come down behind the manifest; once stored, the client's blob requests are hits.
    await expect
      .poll(async () => (await scrape(k.url)).sum("kagami_storage_blobs", { repository: "lib/app" }), {
        timeout: 20_000,
        interval: 200,
      })
      .toBe(3);
    for (const digest of [app.config, ...app.layers]) {
      expect((await drain(await fetch(`${k.url}/v2/lib/app/blobs/${digest}`))).status).toBe(200);
    }
    // Within manifestCheckInterval: served from the cache without asking upstream.
    expect((await drain(await fetch(`${k.url}/v2/lib/app/manifests/v1`))).status).toBe(200);
    const upstreamBeforeRecheck = onDemand.log.length;
    const headsBeforeRecheck = onDemand.count("HEAD", "/v2/lib/app/manifests/v1");
    await new Promise((r) => setTimeout(r, 1200));
    // Past it: one HEAD upstream finds the tag unchanged; the cached manifest is served.
    expect((await drain(await fetch(`${k.url}/v2/lib/app/manifests/v1`))).status).toBe(200);
    expect(onDemand.log.length - upstreamBeforeRecheck).toBe(1);
    expect(onDemand.count("HEAD", "/v2/lib/app/manifests/v1") - headsBeforeRecheck).toBe(1);
    // A tag upstream lacks: asked once, then remembered for negativeCacheTTL.
    expect((await drain(await fetch(`${k.url}/v2/lib/app/manifests/nope`))).status).toBe(404);
    expect((await drain(await fetch(`${k.url}/v2/lib/app/manifests/nope`))).status).toBe(404);
    expect(onDemand.count("GET", "/v2/lib/app/manifests/nope")).toBe(1);

    const m = await scrape(k.url);
    expect(d(m, "kagami_mirror_cache_requests_total", { kind: "manifest", result: "miss" })).toBe(3);
    expect(d(m, "kagami_mirror_cache_requests_total", { kind: "manifest", result: "hit" })).toBe(2);
    expect(d(m, "kagami_mirror_cache_requests_total", { kind: "blob", result: "hit" })).toBe(3);
    expect(d(m, "kagami_mirror_cache_requests_total", { kind: "blob", result: "miss" })).toBe(0);
    expect(d(m, "kagami_mirror_freshness_checks_total", { result: "unchanged" })).toBe(1);
    expect(d(m, "kagami_mirror_freshness_checks_total")).toBe(1);
    expect(d(m, "kagami_mirror_negative_cache_hits_total")).toBe(1);
    // Every exchange the upstream saw is counted under its host, by method.
    const host = { upstream: onDemand.host };
    for (const method of ["GET", "HEAD"]) {
      expect(d(m, "kagami_upstream_requests_total", { ...host, method }), method).toBe(
        onDemand.log.filter((r) => r.method === method).length,
      );
    }
    expect(d(m, "kagami_upstream_requests_total", { ...host, method: "GET", status: "404" })).toBe(1);
    expect(d(m, "kagami_upstream_request_duration_seconds_count", host)).toBe(onDemand.log.length);
    const sent = [...onDemand.bytesOut.values()].reduce((a, b) => a + b, 0);
    expect(d(m, "kagami_upstream_response_bytes_total", host)).toBe(sent);
    expect(m.sum("kagami_storage_manifests", { repository: "lib/app" })).toBe(1);
  }, 60_000);

  it("counts requests that joined a fetch under way", async () => {
    const before = await scrape(k.url);
    onDemand.setRules([
      { method: "GET", path: "/v2/lib/joined/manifests/v1", fault: { kind: "delay", ms: 1500 } },
    ]);
    onDemand.clear();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => fetch(`${k.url}/v2/lib/joined/manifests/v1`).then(drain)),
    );
    onDemand.setRules([]);
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(onDemand.count("GET", "/v2/lib/joined/manifests/v1")).toBe(1);
    const m = await scrape(k.url);
    const d = (name: string, labels: Record<string, string>) =>
      m.sum(name, labels) - before.sum(name, labels);
    expect(d("kagami_mirror_singleflight_joins_total", { kind: "manifest" })).toBe(4);
    expect(d("kagami_mirror_cache_requests_total", { kind: "manifest", result: "miss" })).toBe(1);
  }, 30_000);

  it("counts the sync run and what it stored", async () => {
    await expect
      .poll(
        async () =>
          (await scrape(k.url)).sum("kagami_sync_runs_total", { registry: polled.url, outcome: "success" }),
        { timeout: 20_000, interval: 250 },
      )
      .toBe(1);
    const m = await scrape(k.url);
    expect(m.sum("kagami_sync_runs_total", { outcome: "failure" })).toBe(0);
    const repo = { repository: "team/sync" };
    expect(m.sum("kagami_storage_manifests", repo)).toBe(1);
    expect(m.sum("kagami_storage_blobs", repo)).toBe(2);
    expect(m.sum("kagami_storage_tags", repo)).toBe(1);
    expect(m.sum("kagami_storage_bytes", repo)).toBe(synced.manifest.length + 1024 + configSizeOf(synced));
    for (const method of ["GET", "HEAD"]) {
      expect(m.sum("kagami_upstream_requests_total", { upstream: polled.host, method }), method).toBe(
        polled.log.filter((r) => r.method === method).length,
      );
    }
  }, 30_000);

  it.runIf(hasTool("promtool"))(
    "passes promtool's checks (Kagami's own families: prom-client's defaults break its naming lint)",
    async () => {
      const text = await (await fetch(`${k.url}/metrics`)).text();
      const ours = text
        .split(/(?=^# HELP )/m)
        .filter((block) => block.startsWith("# HELP kagami_"))
        .join("");
      expect(ours).toContain("kagami_mirror_cache_requests_total{");
      const checked = spawnSync("promtool", ["check", "metrics"], { input: ours, encoding: "utf8" });
      expect(`${checked.stdout}${checked.stderr}`.trim()).toBe("");
      expect(checked.status).toBe(0);
    },
  );
});

describe("the Grafana dashboard", () => {
  it("queries only metrics Kagami serves", async () => {
    const k = await startKagami({ config: { extensions: metricsOn } });
    try {
      const m = await scrape(k.url);
      const dashboard = readFileSync(join(repoRoot, "examples", "grafana-dashboard.json"), "utf8");
      const used = new Set(
        [...dashboard.matchAll(/\b((?:kagami|process|nodejs)_[a-z0-9_]+)/g)].map((x) =>
          x[1]!.replace(/_(bucket|sum|count)$/, ""),
        ),
      );
      expect(used.size).toBeGreaterThan(10);
      for (const name of used) expect(m.types.has(name), name).toBe(true);
    } finally {
      await k.destroy();
    }
  });
});

/** The config blob's size, as the manifest records it. */
function configSizeOf(image: PushedImage): number {
  return (JSON.parse(image.manifest.toString()) as { config: { size: number } }).config.size;
}

describe("who may read /metrics", () => {
  let dir: string;
  const running: RunningKagami[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-metrics-access-"));
    hasTool("htpasswd");
    writeHtpasswd(join(dir, "htpasswd"), [
      ["alice", "alice-pw"],
      ["bob", "bob-pw"],
    ]);
  });
  afterAll(async () => {
    await Promise.all(running.map((k) => k.destroy()));
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(http: Record<string, unknown>, extensions: Record<string, unknown> = metricsOn) {
    const k = await startKagami({
      config: { http: { auth: { htpasswd: { path: join(dir, "htpasswd") } }, ...http }, extensions },
    });
    running.push(k);
    return k;
  }
  const status = async (k: RunningKagami, auth?: string) =>
    (await drain(await fetch(`${k.url}/metrics`, auth ? { headers: { Authorization: auth } } : {}))).status;
  const alice = basic("alice", "alice-pw");
  const bob = basic("bob", "bob-pw");

  it("accessControl.metrics.users: only those users; anonymous callers are challenged", async () => {
    const k = await serve({
      accessControl: {
        repositories: { "**": { anonymousPolicy: ["read"], defaultPolicy: ["read"] } },
        metrics: { users: ["alice"] },
      },
    });
    const anonymous = await fetch(`${k.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toMatch(/^Basic realm=/);
    expect(((await anonymous.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("UNAUTHORIZED");
    expect(await status(k, alice)).toBe(200);
    const refused = await fetch(`${k.url}/metrics`, { headers: { Authorization: bob } });
    expect(refused.status).toBe(403);
    const body = (await refused.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]!.code).toBe("DENIED");
    expect(body.errors[0]!.message).toContain("http.accessControl.metrics.users");
    expect(await status(k, basic("alice", "wrong"))).toBe(401);
  });

  it('anonymousPolicy ["read"] opens the metrics to anonymous callers', async () => {
    const k = await serve({ accessControl: { metrics: { anonymousPolicy: ["read"] } } });
    expect(await status(k)).toBe(200);
    // Users must still be named, as in zot.
    expect(await status(k, bob)).toBe(403);
  });

  it("without access control, any signed-in user may read them and anonymous callers may not", async () => {
    const k = await serve({});
    expect(await status(k)).toBe(401);
    expect(await status(k, bob)).toBe(200);
  });

  it("serves the configured path literally, even with characters a router pattern reads as syntax", async () => {
    const k = await serve({}, { metrics: { enable: true, prometheus: { path: "/ops/:x(.*)" } } });
    const at = async (path: string) =>
      (await drain(await fetch(`${k.url}${path}`, { headers: { Authorization: alice } }))).status;
    expect(await at("/ops/:x(.*)")).toBe(200);
    expect(await at("/ops/anything")).toBe(404);
    expect(await at("/metrics")).toBe(404);
  });

  it("without extensions.metrics.enable there is no metrics endpoint, and the probes stay open", async () => {
    const k = await serve({}, { metrics: { enable: false } });
    expect(await status(k, alice)).toBe(404);
    for (const probe of ["/livez", "/readyz", "/startupz"]) {
      const res = await fetch(`${k.url}${probe}`);
      expect(res.status, probe).toBe(200);
      expect(await res.json()).toEqual({ status: "ok" });
    }
  });
});
