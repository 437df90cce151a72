/**
 * Pull-through mirror workloads. The upstream is the pull data set's distribution; the mirrors are
 * distribution as a pull-through cache (proxy.remoteurl) and Kagami with zot's on-demand sync
 * (extensions.sync), each fresh for every repetition so the first pull is truly uncached.
 *
 * - first pull of a large image through the mirror, against the same pull straight from upstream:
 *   total time and time to the layer's first byte;
 * - the second pull, served from the mirror's cache;
 * - many clients pulling one uncached image at once, with a counting proxy between mirror and
 *   upstream: how many times the layer was fetched upstream (the bar is exactly once).
 */
import {
  beats,
  begin,
  type Context,
  rotation,
  type SeedImage,
  sample,
  unavailable,
  type WorkloadSpec,
  wants,
} from "../lib/context.ts";
import { Client } from "../lib/http.ts";
import { pullImage, runClients } from "../lib/ops.ts";
import { warmFreePages } from "../lib/pagecache.ts";
import { CountingProxy } from "../lib/proxy.ts";
import type { MetricDef } from "../lib/results.ts";
import {
  kagamiMirrorSupport,
  mirrorExtension,
  type Server,
  startDistribution,
  startKagami,
} from "../lib/servers.ts";
import { log, sizeId, sizeLabel, sleep } from "../lib/util.ts";
import { ensureSeeds, kagamiLaunch, measured } from "./pull.ts";

type MirrorTarget = "kagami" | "distribution";

async function startMirror(
  ctx: Context,
  target: MirrorTarget,
  upstream: string,
  label: string,
): Promise<Server> {
  return target === "kagami"
    ? startKagami(kagamiLaunch(ctx, label, mirrorExtension(upstream)))
    : startDistribution({ workDir: ctx.workDir, label: `distribution (${label})`, proxyRemoteUrl: upstream });
}

const pullMetrics = (firstByteTable: "primary" | "secondary"): MetricDef[] => [
  { key: "totalMs", label: "pull time", unit: "ms", better: "lower", table: "primary" },
  {
    key: "layerFirstByteMs",
    label: "layer first byte",
    unit: "ms",
    better: "lower",
    table: firstByteTable,
    prefix: "first byte",
  },
  { key: "mbps", label: "throughput", unit: "MB/s", better: "higher" },
  { key: "peakRssMiB", label: "server peak RSS", unit: "MiB", better: "lower" },
  { key: "serverCpuS", label: "server CPU", unit: "s", better: "lower" },
];

export async function mirrorWorkloads(ctx: Context): Promise<void> {
  const { size, fanoutSize, fanoutClients } = ctx.plan.mirror;
  const first: WorkloadSpec = {
    id: `mirror.first-pull.${sizeId(size)}`,
    group: "mirror",
    title: `mirror: first (uncached) pull of a ${sizeLabel(size)} image`,
    tool: "node client (zb's pull)",
    params: { size },
    metrics: pullMetrics("primary"),
    bars: [
      {
        kind: "delta",
        metric: "layerFirstByteMs",
        against: "direct",
        maxDelta: 100,
        text: "layer's first byte within 100 ms of a direct pull",
      },
      beats("totalMs"),
    ],
  };
  const second: WorkloadSpec = {
    id: `mirror.cached-pull.${sizeId(size)}`,
    group: "mirror",
    title: `mirror: second pull of the ${sizeLabel(size)} image, from cache`,
    tool: "node client (zb's pull)",
    params: { size },
    metrics: pullMetrics("secondary"),
    bars: [beats("totalMs")],
  };
  const fanout: WorkloadSpec = {
    id: `mirror.fanout.${sizeId(fanoutSize)}.c${fanoutClients}`,
    group: "mirror",
    title: `mirror: ${fanoutClients} clients pull one uncached ${sizeLabel(fanoutSize)} image at once`,
    tool: "node client (zb's pull) + counting proxy before upstream",
    params: { size: fanoutSize, clients: fanoutClients },
    metrics: [
      {
        key: "upstreamFetches",
        label: "upstream layer GETs",
        unit: "GETs",
        better: "lower",
        table: "primary",
      },
      {
        key: "upstreamMB",
        label: "upstream layer bytes",
        unit: "MB",
        better: "lower",
        table: "secondary",
        prefix: "fetched",
      },
      {
        key: "totalMs",
        label: "time until all have it",
        unit: "ms",
        better: "lower",
        table: "secondary",
        prefix: "all done in",
      },
      { key: "peakRssMiB", label: "server peak RSS", unit: "MiB", better: "lower" },
      { key: "serverCpuS", label: "server CPU", unit: "s", better: "lower" },
    ],
    bars: [{ kind: "equals", metric: "upstreamFetches", value: 1, text: "exactly one upstream fetch" }],
  };
  const specs = [first, second, fanout].filter((s) => wants(ctx, s.id));
  if (specs.length === 0) return;
  const upstream = ctx.pull.distribution;
  if (!upstream) {
    for (const s of specs) unavailable(ctx, s, "needs distribution as the upstream, and it is not installed");
    return;
  }
  const support = await kagamiMirrorSupport(ctx.kagamiRoot, ctx.workDir);
  const targets: MirrorTarget[] = support.available ? ["kagami", "distribution"] : ["distribution"];
  if (!support.available) log(`kagami mirror: ${support.reason}`);
  const results = new Map(specs.map((s) => [s.id, begin(ctx, s)]));
  for (const w of results.values()) if (!support.available) w.missing = { kagami: support.reason };
  const [seed, fanSeed] = (await ensureSeeds(ctx, [size, fanoutSize])) as [SeedImage, SeedImage];

  const pullOnce = async (
    w: ReturnType<typeof begin>,
    target: string,
    rep: number,
    server: Server,
    url: string,
  ) =>
    sample(w, target, rep, () =>
      measured(server, async () => {
        const client = new Client(url);
        try {
          const r = await pullImage(client, seed.repo, seed.tag);
          return {
            target,
            rep,
            values: {
              totalMs: r.ms,
              layerFirstByteMs: r.layerFirstByteMs ?? Number.NaN,
              mbps: r.bytes / (r.ms / 1000) / 1e6,
            },
            errors: 0,
          };
        } finally {
          client.close();
        }
      }),
    );

  for (let rep = 0; rep < ctx.plan.reps; rep++) {
    const wFirst = results.get(first.id);
    const wSecond = results.get(second.id);
    if (wFirst || wSecond) {
      // The baseline: the same pull straight from upstream (warm: its files are in the page cache).
      if (wFirst) await pullOnce(wFirst, "direct", rep, upstream, upstream.url);
      if (wSecond) await pullOnce(wSecond, "direct", rep, upstream, upstream.url);
      for (const target of rotation(targets, rep)) {
        const mirror = await startMirror(ctx, target, upstream.url, `mirror of ${upstream.label}`);
        try {
          // Each mirror writes the whole image into fresh page cache during (Kagami) or beside
          // (distribution) this pull: both get warm page frames for it.
          warmFreePages(ctx.workDir, size * 1.25);
          if (wFirst) await pullOnce(wFirst, target, rep, mirror, mirror.url);
          else {
            const warm = new Client(mirror.url);
            await pullImage(warm, seed.repo, seed.tag).finally(() => warm.close());
          }
          // Let a mirror that stores in the background finish before asking again.
          await sleep(1000);
          if (wSecond) await pullOnce(wSecond, target, rep, mirror, mirror.url);
        } finally {
          await mirror.stop();
        }
      }
    }
    const wFan = results.get(fanout.id);
    if (!wFan) continue;
    for (const target of rotation(targets, rep)) {
      const proxy = await CountingProxy.start(upstream.url);
      const mirror = await startMirror(ctx, target, proxy.url, "fan-out mirror").catch(async (err) => {
        await proxy.close();
        throw err;
      });
      try {
        await sample(wFan, target, rep, () =>
          measured(mirror, async () => {
            const pool = Array.from({ length: fanoutClients }, () => new Client(mirror.url));
            try {
              const r = await runClients(pool, 0, 1, (client) =>
                pullImage(client, fanSeed.repo, fanSeed.tag),
              );
              const c = proxy.counts;
              return {
                target,
                rep,
                values: {
                  upstreamFetches: c.blobGets[fanSeed.layerDigest] ?? 0,
                  upstreamMB: (c.blobBytes[fanSeed.layerDigest] ?? 0) / 1e6,
                  upstreamRequests: c.requests,
                  totalMs: r.elapsedMs,
                  clientsDone: r.ops.length,
                },
                errors: r.errors.length,
                ...(r.errors.length ? { errorDetail: r.errors.slice(0, 3).join(" | ") } : {}),
              };
            } finally {
              for (const cl of pool) cl.close();
            }
          }),
        );
      } finally {
        await mirror.stop();
        await proxy.close();
      }
    }
  }
}
