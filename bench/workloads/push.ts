/**
 * Write workloads, each on a fresh pair of registries (so earlier pushes neither fill the disk nor
 * warm anything): zb's monolithic and chunked push at every size and client count, one large push
 * watched for peak memory, and zb's 75% pull / 25% push mix.
 */
import {
  beats,
  begin,
  type Context,
  clientMetrics,
  rotation,
  sample,
  type WorkloadSpec,
  wants,
} from "../lib/context.ts";
import { Client } from "../lib/http.ts";
import { type PushMode, pullImage, pushImage, runClients } from "../lib/ops.ts";
import { warmFreePages } from "../lib/pagecache.ts";
import type { BarDef, MetricDef } from "../lib/results.ts";
import { type Server, startDistribution, startKagami } from "../lib/servers.ts";
import { GiB, hashString, log, MiB, prng, sizeId, sizeLabel } from "../lib/util.ts";
import { blobSource, clientValues, kagamiLaunch, measured } from "./pull.ts";

export async function freshPair(ctx: Context, label: string): Promise<Server[]> {
  const servers = [await startKagami(kagamiLaunch(ctx, label))];
  if (ctx.tools.distribution) {
    servers.push(await startDistribution({ workDir: ctx.workDir, label: `distribution (${label})` }));
  }
  return servers;
}

function pushMetrics(big: boolean): MetricDef[] {
  return [
    { key: "mbps", label: "throughput", unit: "MB/s", better: "higher", table: "primary" },
    {
      key: "opsPerSec",
      label: "pushes/s",
      unit: "pushes/s",
      better: "higher",
      table: big ? undefined : "secondary",
    },
    {
      key: "rps",
      label: "HTTP requests/s",
      unit: "req/s",
      better: "higher",
      table: big ? undefined : "secondary",
    },
    {
      key: "peakRssMiB",
      label: "server peak RSS",
      unit: "MiB",
      better: "lower",
      table: big ? "primary" : undefined,
    },
    { key: "p99Ms", label: "p99 push time", unit: "ms", better: "lower" },
    { key: "serverCpuS", label: "server CPU", unit: "s", better: "lower" },
  ];
}

interface PushCase {
  mode: PushMode;
  size: number;
  clients: number;
  seconds: number;
  big: boolean;
}

export async function pushWorkloads(ctx: Context): Promise<void> {
  const p = ctx.plan.push;
  const cases: PushCase[] = [];
  for (const mode of ["monolithic", "chunked"] as const) {
    for (const size of p.sizes) {
      for (const clients of p.clients) cases.push({ mode, size, clients, seconds: p.seconds, big: false });
    }
  }
  cases.push({ mode: "monolithic", size: p.big, clients: 1, seconds: 0, big: true });

  for (const c of cases) {
    const chunkNote = c.mode === "chunked" ? `, ${sizeLabel(p.chunkSize)} chunks` : "";
    const bars: BarDef[] = [beats("mbps")];
    if (c.big) bars.push({ kind: "max", metric: "peakRssMiB", max: 200, text: "peak RSS < 200 MiB" });
    const spec: WorkloadSpec = {
      id: `push.${c.mode}.${sizeId(c.size)}.c${c.clients}`,
      group: "push",
      title: `${c.mode} push ${sizeLabel(c.size)}${chunkNote}, ${c.clients} client${c.clients > 1 ? "s" : ""}`,
      tool: "node client (zb's push: layer, config, manifest; a new repository each)",
      params: { ...c, chunkSize: c.mode === "chunked" ? p.chunkSize : undefined },
      metrics: pushMetrics(c.big),
      bars,
    };
    if (!wants(ctx, spec.id)) continue;
    const w = begin(ctx, spec);
    const source = await blobSource(ctx, c.size);
    const servers = await freshPair(ctx, spec.id);
    try {
      for (let rep = 0; rep < ctx.plan.reps; rep++) {
        for (const s of rotation(servers, rep)) {
          // Large pushes write about a GiB of new data per sample: warm page frames for each
          // server alike, as for the mirror's first pull (lib/pagecache.ts says why).
          if (c.size >= 100 * MiB) warmFreePages(ctx.workDir, 1.25 * GiB);
          await sample(w, s.target, rep, () =>
            measured(s, async () => {
              const pool = Array.from({ length: c.clients }, () => new Client(s.url));
              try {
                const r = await runClients(pool, c.seconds * 1000, 1, (client, ci, i) =>
                  pushImage(
                    client,
                    `bench/push/r${rep}-c${ci}-n${i}`,
                    "latest",
                    source.variant(`${spec.id}/${s.target}/${rep}/${ci}/${i}`),
                    c.mode,
                    p.chunkSize,
                  ),
                );
                return { target: s.target, rep, ...clientValues(r) };
              } finally {
                for (const cl of pool) cl.close();
              }
            }),
          );
        }
      }
    } finally {
      for (const s of servers) await s.stop();
    }
  }
}

export async function mixedPushPullWorkloads(ctx: Context): Promise<void> {
  const { sizes, pullShare, clients, seconds } = ctx.plan.mixedPushPull;
  for (const size of sizes) {
    const pct = Math.round(pullShare * 100);
    const spec: WorkloadSpec = {
      id: `mixed.pull${pct}-push${100 - pct}.${sizeId(size)}.c${clients}`,
      group: "mixed",
      title: `mixed ${pct}% pull / ${100 - pct}% push of ${sizeLabel(size)}, ${clients} clients`,
      tool: "node client (zb's MixedPullAndPush)",
      params: { size, pullShare, clients, seconds },
      metrics: clientMetrics("ops/s", "p99 operation time"),
      bars: [beats("mbps")],
    };
    if (!wants(ctx, spec.id)) continue;
    const w = begin(ctx, spec);
    const source = await blobSource(ctx, size);
    const servers = await freshPair(ctx, spec.id);
    try {
      const seedLayer = source.variant(`${spec.id}/seed`);
      for (const s of servers) {
        const c = new Client(s.url);
        await pushImage(c, "bench/mixed", "seed", seedLayer, "monolithic", 0).finally(() => c.close());
      }
      log(`seeded bench/mixed:seed (${sizeLabel(size)}) into ${servers.map((s) => s.label).join(", ")}`);
      for (let rep = 0; rep < ctx.plan.reps; rep++) {
        for (const s of rotation(servers, rep)) {
          await sample(w, s.target, rep, () =>
            measured(s, async () => {
              const pool = Array.from({ length: clients }, () => new Client(s.url));
              const rngs = pool.map((_, i) => prng(hashString(`${spec.id}/${rep}/${i}`)));
              try {
                const r = await runClients(pool, seconds * 1000, 1, (client, ci, i) =>
                  rngs[ci]!() < pullShare
                    ? pullImage(client, "bench/mixed", "seed")
                    : pushImage(
                        client,
                        `bench/mixed/r${rep}-c${ci}-n${i}`,
                        "latest",
                        source.variant(`${spec.id}/${s.target}/${rep}/${ci}/${i}`),
                        "monolithic",
                        0,
                      ),
                );
                return { target: s.target, rep, ...clientValues(r) };
              } finally {
                for (const cl of pool) cl.close();
              }
            }),
          );
        }
      }
    } finally {
      for (const s of servers) await s.stop();
    }
  }
}
