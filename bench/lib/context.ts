/** What every workload gets: the plan (sizes, durations), tools found, where to work, results so far. */
import type { BlobSource } from "./blobs.ts";
import type { BarDef, MetricDef, Sample, WorkloadResult } from "./results.ts";
import type { Server } from "./servers.ts";
import { errorMessage, fmt, GiB, KiB, log, MiB } from "./util.ts";

export interface Plan {
  mode: "full" | "smoke";
  reps: number;
  manifest: { connections: number; seconds: number };
  /** Blob GETs: how many requests a sample makes (enough for a few seconds, at least one per connection). */
  blobGet: {
    sizes: number[];
    connections: number[];
    requests: (size: number, connections: number) => number;
  };
  push: {
    sizes: number[];
    clients: number[];
    seconds: number;
    chunkSize: number;
    /** The large push measured alone, for time and peak memory. */
    big: number;
  };
  mixedPull: { sizes: number[]; weights: number[]; clients: number; seconds: number };
  mixedPushPull: { sizes: number[]; pullShare: number; clients: number; seconds: number };
  listing: { repos: number; tags: number; connections: number; seconds: number };
  mirror: { size: number; fanoutSize: number; fanoutClients: number };
}

export function fullPlan(reps: number): Plan {
  return {
    mode: "full",
    reps,
    manifest: { connections: 32, seconds: 4 },
    blobGet: {
      sizes: [MiB, 10 * MiB, 100 * MiB, GiB],
      connections: [1, 8],
      // About 1 GB moved per sample for small blobs, 2.5 GB for 100 MiB, three (or one per connection) 1 GiB blobs.
      requests: (size, conns) =>
        Math.max(conns, size >= GiB ? 3 : Math.ceil((size >= 100 * MiB ? 2.5e9 : 1e9) / size)),
    },
    push: { sizes: [MiB, 10 * MiB, 100 * MiB], clients: [1, 4], seconds: 2.5, chunkSize: 10 * MiB, big: GiB },
    mixedPull: { sizes: [MiB, 10 * MiB, 100 * MiB], weights: [0.2, 0.7, 0.1], clients: 4, seconds: 3 },
    mixedPushPull: { sizes: [MiB, 10 * MiB], pullShare: 0.75, clients: 4, seconds: 3 },
    listing: { repos: 1000, tags: 1000, connections: 8, seconds: 3 },
    mirror: { size: GiB, fanoutSize: 100 * MiB, fanoutClients: 32 },
  };
}

/** A few seconds of every workload at toy sizes: proves the harness works, measures nothing. */
export function smokePlan(): Plan {
  return {
    mode: "smoke",
    reps: 1,
    manifest: { connections: 8, seconds: 1 },
    blobGet: { sizes: [MiB], connections: [8], requests: () => 64 },
    push: { sizes: [MiB], clients: [1], seconds: 0.2, chunkSize: 256 * KiB, big: 8 * MiB },
    mixedPull: { sizes: [256 * KiB, 512 * KiB, MiB], weights: [0.2, 0.7, 0.1], clients: 2, seconds: 0.3 },
    mixedPushPull: { sizes: [MiB], pullShare: 0.75, clients: 2, seconds: 0.3 },
    listing: { repos: 20, tags: 20, connections: 4, seconds: 1 },
    mirror: { size: 4 * MiB, fanoutSize: 2 * MiB, fanoutClients: 4 },
  };
}

export interface Tools {
  curl: boolean;
  wrk: boolean;
  ab: boolean;
  nginx: boolean;
  distribution: boolean;
}

export interface Context {
  plan: Plan;
  /** The Kagami checkout under test (its dist/ is run). */
  kagamiRoot: string;
  /** Temp directory for every instance, blob file and script of this run. */
  workDir: string;
  cpuProfDir?: string;
  tools: Tools;
  /** Workload ids to run (regular expression); everything when absent. */
  only?: RegExp;
  results: WorkloadResult[];
  /** Blob bodies by size. */
  sources: Map<number, BlobSource>;
  /** Long-lived instances holding the pull data set, by target. */
  pull: Partial<Record<"kagami" | "distribution" | "nginx", Server>>;
  /** The images in the pull data set (repository `bench/pull`), by layer size. */
  seeds: Map<number, SeedImage>;
}

export interface SeedImage {
  repo: string;
  tag: string;
  manifestDigest: string;
  layerDigest: string;
  size: number;
}

export interface WorkloadSpec {
  id: string;
  group: string;
  title: string;
  tool: string;
  params: Record<string, unknown>;
  metrics: MetricDef[];
  bars?: BarDef[];
}

export function wants(ctx: Context, id: string): boolean {
  return !ctx.only || ctx.only.test(id);
}

/** Registers a workload and returns a recorder for its samples. */
export function begin(ctx: Context, spec: WorkloadSpec): WorkloadResult {
  const w: WorkloadResult = { ...spec, bars: spec.bars ?? [], samples: [], status: "ok" };
  ctx.results.push(w);
  return w;
}

export function unavailable(ctx: Context, spec: WorkloadSpec, reason: string): void {
  const w = begin(ctx, spec);
  w.status = "unavailable";
  w.note = reason;
  log(`${spec.id}: ${reason}`);
}

/** Runs one sample; a failure is recorded on the workload (and logged), never thrown. */
export async function sample(w: WorkloadResult, target: string, rep: number, fn: () => Promise<Sample>) {
  try {
    const s = await fn();
    w.samples.push(s);
    const shown = w.metrics
      .filter((m) => m.table && s.values[m.key] !== undefined)
      .map((m) => `${m.key}=${fmt(s.values[m.key])}`)
      .join(" ");
    log(
      `${w.id} [${target} #${rep + 1}] ${shown}${s.errors ? ` errors=${s.errors} ${s.errorDetail ?? ""}` : ""}`,
    );
  } catch (err) {
    w.status = "failed";
    w.note = `${target}: ${errorMessage(err)}`.slice(0, 2000);
    log(`${w.id} [${target} #${rep + 1}] FAILED: ${errorMessage(err)}`);
  }
}

/** The targets in the order for repetition `rep`: rotated, so neither registry always goes first. */
export function rotation<T>(targets: T[], rep: number): T[] {
  const k = rep % targets.length;
  return [...targets.slice(k), ...targets.slice(0, k)];
}

/** The bar "Kagami at least `min` times distribution" on `metric`. */
export function beats(metric: string, min = 1): BarDef {
  const text = min === 1 ? "≥ distribution" : `≥ ${min}× distribution`;
  return { kind: "ratio", metric, against: "distribution", min, text };
}

/** Metrics of a workload driven by the Node client: MB/s first, then operations/s beside it. */
export function clientMetrics(opsUnit: string, p99Label: string): MetricDef[] {
  return [
    { key: "mbps", label: "throughput", unit: "MB/s", better: "higher", table: "primary" },
    { key: "opsPerSec", label: opsUnit, unit: opsUnit, better: "higher", table: "secondary" },
    { key: "p99Ms", label: p99Label, unit: "ms", better: "lower" },
    { key: "serverCpuS", label: "server CPU", unit: "s", better: "lower" },
    { key: "peakRssMiB", label: "server peak RSS", unit: "MiB", better: "lower" },
  ];
}
