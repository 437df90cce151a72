/**
 * Read workloads over one long-lived pair of registries holding the same images: manifest GET by tag
 * and HEAD by digest (32 connections), blob GET at every size (beside nginx serving the same files),
 * zb's mixed-size pull, and `_catalog` / `tags/list` over many repositories and tags.
 */
import { BlobSource, configBlob, imageManifest, ociManifestType } from "../lib/blobs.ts";
import {
  beats,
  begin,
  type Context,
  clientMetrics,
  rotation,
  type SeedImage,
  sample,
  unavailable,
  type WorkloadSpec,
  wants,
} from "../lib/context.ts";
import { Client } from "../lib/http.ts";
import { ab, curlGet, type LoadResult, wrk } from "../lib/loadgen.ts";
import { manifestAccept, pullImage, pushBlobMonolithic, pushImage, runClients } from "../lib/ops.ts";
import { sampleAll } from "../lib/proc.ts";
import type { MetricDef, Sample } from "../lib/results.ts";
import { type KagamiLaunch, type Server, startDistribution, startKagami } from "../lib/servers.ts";
import { hashString, log, percentile, pick, prng, sizeId, sizeLabel } from "../lib/util.ts";

export const pullRepo = "bench/pull";

export function kagamiLaunch(
  ctx: Context,
  label: string,
  extraConfig?: Record<string, unknown>,
): KagamiLaunch {
  const l: KagamiLaunch = { root: ctx.kagamiRoot, workDir: ctx.workDir, label: `kagami (${label})` };
  if (ctx.cpuProfDir) l.cpuProfDir = ctx.cpuProfDir;
  if (extraConfig) l.extraConfig = extraConfig;
  return l;
}

export async function blobSource(ctx: Context, size: number): Promise<BlobSource> {
  let s = ctx.sources.get(size);
  if (!s) {
    s = await BlobSource.create(ctx.workDir, size);
    ctx.sources.set(size, s);
  }
  return s;
}

/**
 * Makes sure `bench/pull:<size>` exists in every pull registry: one single-layer image per size, the
 * same bytes in each. Returns the images by size.
 */
export async function ensureSeeds(ctx: Context, sizes: number[]): Promise<SeedImage[]> {
  for (const size of [...new Set(sizes)].sort((a, b) => a - b)) {
    if (ctx.seeds.has(size)) continue;
    const layer = (await blobSource(ctx, size)).variant("seed");
    for (const server of registries(ctx)) {
      const client = new Client(server.url);
      try {
        const r = await pushImage(client, pullRepo, sizeId(size), layer, "monolithic", 0);
        ctx.seeds.set(size, {
          repo: pullRepo,
          tag: sizeId(size),
          manifestDigest: r.manifestDigest!,
          layerDigest: layer.digest,
          size,
        });
      } finally {
        client.close();
      }
    }
    log(
      `seeded ${pullRepo}:${sizeId(size)} into ${registries(ctx)
        .map((r) => r.label)
        .join(", ")}`,
    );
  }
  return sizes.map((s) => ctx.seeds.get(s)!);
}

function loadValues(r: LoadResult): Record<string, number> {
  return { rps: r.rps, mbps: r.mbps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, requests: r.requests };
}

/** Runs `fn` while sampling the server's memory and CPU; adds peakRssMiB and serverCpuS to the values. */
export async function measured(server: Server, fn: () => Promise<Omit<Sample, "server">>): Promise<Sample> {
  const stop = server.target === "nginx" ? () => ({}) : sampleAll({ [server.target]: server.pid });
  let s: Omit<Sample, "server">;
  let usage: Record<string, { peakRssMiB: number; cpuSeconds: number }>;
  try {
    s = await fn();
  } finally {
    usage = stop();
  }
  const u = usage[server.target];
  if (u) {
    s.values.peakRssMiB = u.peakRssMiB;
    s.values.serverCpuS = u.cpuSeconds;
  }
  return { ...s, server: usage };
}

export function registries(ctx: Context): Server[] {
  return [ctx.pull.kagami, ctx.pull.distribution].filter((s): s is Server => s !== undefined);
}

const rateMetrics: MetricDef[] = [
  { key: "rps", label: "requests/s", unit: "req/s", better: "higher", table: "primary" },
  { key: "p99Ms", label: "p99 latency", unit: "ms", better: "lower", table: "secondary", prefix: "p99" },
  { key: "p50Ms", label: "p50 latency", unit: "ms", better: "lower" },
  { key: "serverCpuS", label: "server CPU", unit: "s", better: "lower" },
  { key: "peakRssMiB", label: "server peak RSS", unit: "MiB", better: "lower" },
];

export async function manifestWorkloads(ctx: Context): Promise<void> {
  const { connections, seconds } = ctx.plan.manifest;
  const ids = [`manifest.get-by-tag.c${connections}`, `manifest.head-by-digest.c${connections}`];
  if (!ids.some((id) => wants(ctx, id))) return;
  const [seed] = (await ensureSeeds(ctx, [Math.min(...ctx.plan.blobGet.sizes)])) as [SeedImage];
  const specs: (WorkloadSpec & { run: (s: Server) => Promise<LoadResult> })[] = [
    {
      id: ids[0]!,
      group: "manifests",
      title: `manifest GET by tag, ${connections} connections`,
      tool: "wrk",
      params: { connections, seconds, url: `/v2/${seed.repo}/manifests/${seed.tag}` },
      metrics: rateMetrics,
      bars: [beats("rps", 1.5)],
      run: (s) =>
        wrk({
          url: `${s.url}/v2/${seed.repo}/manifests/${seed.tag}`,
          connections,
          seconds,
          headers: { Accept: manifestAccept },
          workDir: ctx.workDir,
        }),
    },
    {
      id: ids[1]!,
      group: "manifests",
      title: `manifest HEAD by digest, ${connections} connections`,
      tool: "ab (wrk 4.1 stalls on HEAD)",
      params: { connections, seconds, url: `/v2/${seed.repo}/manifests/${seed.manifestDigest}` },
      metrics: rateMetrics,
      bars: [beats("rps", 1.5)],
      run: (s) =>
        ab({
          url: `${s.url}/v2/${seed.repo}/manifests/${seed.manifestDigest}`,
          connections,
          seconds,
          method: "HEAD",
          headers: { Accept: manifestAccept },
        }),
    },
  ];
  for (const spec of specs) {
    if (!wants(ctx, spec.id)) continue;
    const tool = spec.tool.startsWith("ab") ? "ab" : "wrk";
    if (!ctx.tools[tool]) {
      unavailable(ctx, spec, `${tool} is not installed`);
      continue;
    }
    const w = begin(ctx, spec);
    // Warm-up (JIT, caches, connection setup), not recorded.
    if (ctx.plan.mode === "full") for (const s of registries(ctx)) await spec.run(s).catch(() => undefined);
    for (let rep = 0; rep < ctx.plan.reps; rep++) {
      for (const s of rotation(registries(ctx), rep)) {
        await sample(w, s.target, rep, () =>
          measured(s, async () => {
            const r = await spec.run(s);
            return {
              target: s.target,
              rep,
              values: loadValues(r),
              errors: r.errors,
              errorDetail: r.errorDetail,
            };
          }),
        );
      }
    }
  }
}

export async function blobGetWorkloads(ctx: Context): Promise<void> {
  const { sizes, connections } = ctx.plan.blobGet;
  for (const size of sizes) {
    for (const conns of connections) {
      const big = size === Math.max(...sizes) && size >= 8 * 1024 * 1024;
      const spec: WorkloadSpec = {
        id: `blob.get.${sizeId(size)}.c${conns}`,
        group: "blob GET",
        title: `blob GET ${sizeLabel(size)}, ${conns} connection${conns > 1 ? "s" : ""}`,
        tool: "curl --parallel",
        params: { size, connections: conns, requests: ctx.plan.blobGet.requests(size, conns) },
        metrics: [
          { key: "mbps", label: "throughput", unit: "MB/s", better: "higher", table: "primary" },
          ...(big
            ? [
                {
                  key: "peakRssMiB",
                  label: "server peak RSS",
                  unit: "MiB",
                  better: "lower",
                  table: "primary",
                } as MetricDef,
              ]
            : [{ key: "peakRssMiB", label: "server peak RSS", unit: "MiB", better: "lower" } as MetricDef]),
          { key: "rps", label: "requests/s", unit: "req/s", better: "higher" },
          { key: "p99Ms", label: "p99 latency", unit: "ms", better: "lower" },
          { key: "serverCpuS", label: "server CPU", unit: "s", better: "lower" },
        ],
        bars: [
          beats("mbps"),
          {
            kind: "ratio",
            metric: "mbps",
            against: "nginx",
            min: 0.8,
            text: "≥ 80% of the static file server",
          },
          ...(big
            ? [{ kind: "max", metric: "peakRssMiB", max: 200, text: "peak RSS < 200 MiB" } as const]
            : []),
        ],
      };
      if (!wants(ctx, spec.id)) continue;
      if (!ctx.tools.curl) {
        unavailable(ctx, spec, "curl is not installed");
        continue;
      }
      const [seed] = (await ensureSeeds(ctx, [size])) as [SeedImage];
      const w = begin(ctx, spec);
      const servers = [ctx.pull.kagami, ctx.pull.distribution, ctx.pull.nginx].filter(
        (s): s is Server => s !== undefined,
      );
      if (!ctx.pull.nginx) w.missing = { nginx: "nginx is not installed" };
      const hex = seed.layerDigest.slice("sha256:".length);
      for (let rep = 0; rep < ctx.plan.reps; rep++) {
        for (const s of rotation(servers, rep)) {
          const path =
            s.target === "nginx"
              ? `/blobs/sha256/${hex.slice(0, 2)}/${hex}`
              : `/v2/${seed.repo}/blobs/${seed.layerDigest}`;
          await sample(w, s.target, rep, () =>
            measured(s, async () => {
              const r = await curlGet({
                url: `${s.url}${path}`,
                connections: conns,
                requests: ctx.plan.blobGet.requests(size, conns),
                workDir: ctx.workDir,
              });
              return {
                target: s.target,
                rep,
                values: loadValues(r),
                errors: r.errors,
                errorDetail: r.errorDetail,
              };
            }),
          );
        }
      }
    }
  }
}

export async function mixedPullWorkload(ctx: Context): Promise<void> {
  const { sizes, weights, clients, seconds } = ctx.plan.mixedPull;
  const mix = weights.map((wt, i) => `${Math.round(wt * 100)}% ${sizeLabel(sizes[i]!)}`).join(" / ");
  const spec: WorkloadSpec = {
    id: `mixed.pull.${weights.map((x) => Math.round(x * 100)).join("-")}.c${clients}`,
    group: "mixed",
    title: `mixed pull ${mix}, ${clients} clients`,
    tool: "node client (zb's pull: HEAD+GET manifest, config, layer)",
    params: { sizes, weights, clients, seconds },
    metrics: clientMetrics("pulls/s", "p99 pull time"),
    bars: [beats("mbps")],
  };
  if (!wants(ctx, spec.id)) return;
  const seeds = await ensureSeeds(ctx, sizes);
  const w = begin(ctx, spec);
  for (let rep = 0; rep < ctx.plan.reps; rep++) {
    for (const s of rotation(registries(ctx), rep)) {
      await sample(w, s.target, rep, () =>
        measured(s, async () => {
          const pool = Array.from({ length: clients }, () => new Client(s.url));
          const rngs = pool.map((_, i) => prng(hashString(`${spec.id}/${rep}/${i}`)));
          try {
            const r = await runClients(pool, seconds * 1000, 1, (client, ci) => {
              const seed = seeds[pick(weights, rngs[ci]!())]!;
              return pullImage(client, seed.repo, seed.tag);
            });
            return { target: s.target, rep, ...clientValues(r) };
          } finally {
            for (const c of pool) c.close();
          }
        }),
      );
    }
  }
}

export function clientValues(r: {
  elapsedMs: number;
  ops: { bytes: number; requests: number; ms: number }[];
  errors: string[];
}): { values: Record<string, number>; errors: number; errorDetail?: string } {
  const seconds = r.elapsedMs / 1000;
  const bytes = r.ops.reduce((a, o) => a + o.bytes, 0);
  const requests = r.ops.reduce((a, o) => a + o.requests, 0);
  const out: { values: Record<string, number>; errors: number; errorDetail?: string } = {
    values: {
      mbps: bytes / seconds / 1e6,
      opsPerSec: r.ops.length / seconds,
      rps: requests / seconds,
      p50Ms: percentile(
        r.ops.map((o) => o.ms),
        50,
      ),
      p99Ms: percentile(
        r.ops.map((o) => o.ms),
        99,
      ),
      ops: r.ops.length,
      seconds,
    },
    errors: r.errors.length,
  };
  if (r.errors.length) out.errorDetail = r.errors.slice(0, 3).join(" | ");
  return out;
}

/** Pushes a tiny image into `bench/tags`, mounts its config into `repos - 1` more repositories, tags it `tags` times. */
async function seedListing(server: Server, repos: number, tags: number, parallel: number): Promise<void> {
  const pool = Array.from({ length: parallel }, () => new Client(server.url));
  try {
    const config = configBlob("listing");
    await pushBlobMonolithic(pool[0]!, "bench/tags", config);
    const manifest = imageManifest(config, []);
    const put = (c: Client, repo: string, tag: string) =>
      c.expect(201, `/v2/${repo}/manifests/${tag}`, {
        method: "PUT",
        body: manifest,
        headers: { "Content-Type": ociManifestType },
      });
    const jobs: ((c: Client) => Promise<unknown>)[] = [];
    for (let i = 0; i < tags; i++) jobs.push((c) => put(c, "bench/tags", `t${String(i).padStart(5, "0")}`));
    for (let i = 1; i < repos; i++) {
      const repo = `bench/repo-${String(i).padStart(5, "0")}`;
      jobs.push(async (c) => {
        await c.expect(201, `/v2/${repo}/blobs/uploads/?mount=${config.digest}&from=bench/tags`, {
          method: "POST",
        });
        await put(c, repo, "latest");
      });
    }
    let next = 0;
    await Promise.all(
      pool.map(async (c) => {
        while (next < jobs.length) await jobs[next++]!(c);
      }),
    );
  } finally {
    for (const c of pool) c.close();
  }
}

export async function listingWorkloads(ctx: Context): Promise<void> {
  const { repos, tags, connections, seconds } = ctx.plan.listing;
  const specs: (WorkloadSpec & { path: string; key: "repositories" | "tags"; expect: number })[] = [
    {
      id: `list.catalog.${repos}-repos`,
      group: "listing",
      title: `_catalog?n=${repos} over ${repos.toLocaleString("en-US")} repositories, ${connections} connections`,
      tool: "wrk",
      params: { repos, connections, seconds },
      metrics: rateMetrics,
      bars: [beats("rps")],
      path: `/v2/_catalog?n=${repos}`,
      key: "repositories",
      expect: repos,
    },
    {
      id: `list.tags.${tags}-tags`,
      group: "listing",
      title: `tags/list?n=${tags} of a repository with ${tags.toLocaleString("en-US")} tags, ${connections} connections`,
      tool: "wrk",
      params: { tags, connections, seconds },
      metrics: rateMetrics,
      bars: [beats("rps")],
      path: `/v2/bench/tags/tags/list?n=${tags}`,
      key: "tags",
      expect: tags,
    },
  ];
  const todo = specs.filter((s) => wants(ctx, s.id));
  if (todo.length === 0) return;
  if (!ctx.tools.wrk) {
    for (const s of todo) unavailable(ctx, s, "wrk is not installed");
    return;
  }
  const servers: Server[] = [];
  try {
    servers.push(await startKagami(kagamiLaunch(ctx, "listing")));
    if (ctx.tools.distribution) {
      servers.push(await startDistribution({ workDir: ctx.workDir, label: "distribution (listing)" }));
    }
    for (const s of servers) {
      const t = performance.now();
      await seedListing(s, repos, tags, 8);
      log(
        `seeded ${repos} repositories and ${tags} tags into ${s.label} in ${((performance.now() - t) / 1000).toFixed(1)} s`,
      );
    }
    for (const spec of todo) {
      const w = begin(ctx, spec);
      for (const s of servers) {
        const c = new Client(s.url);
        const res = await c.expect(200, spec.path).finally(() => c.close());
        const got = (JSON.parse(res.body!.toString()) as Record<string, string[]>)[spec.key]?.length ?? 0;
        w.params[`${s.target}Entries`] = got;
        if (got !== spec.expect)
          log(`${spec.id}: ${s.label} lists ${got} ${spec.key}, expected ${spec.expect}`);
      }
      for (let rep = 0; rep < ctx.plan.reps; rep++) {
        for (const s of rotation(servers, rep)) {
          await sample(w, s.target, rep, () =>
            measured(s, async () => {
              const r = await wrk({
                url: `${s.url}${spec.path}`,
                connections,
                seconds,
                workDir: ctx.workDir,
              });
              return {
                target: s.target,
                rep,
                values: loadValues(r),
                errors: r.errors,
                errorDetail: r.errorDetail,
              };
            }),
          );
        }
      }
    }
  } finally {
    for (const s of servers) await s.stop();
  }
}
