/** The shape of a benchmark run's raw numbers (the JSON file) and how a bar is judged from them. */
import type { ProcUsage } from "./proc.ts";
import { median } from "./util.ts";

export type Better = "higher" | "lower";

export interface MetricDef {
  key: string;
  label: string;
  unit: string;
  better: Better;
  /**
   * In the report's table: a primary metric gets a row of its own (ratio and bars are judged on it);
   * secondary ones are shown beside the workload's first primary. Others stay in the JSON.
   */
  table?: "primary" | "secondary";
  /** Words before a secondary value in the table ("p99", "first byte"). */
  prefix?: string;
}

export interface Sample {
  /** kagami, distribution, nginx, or for mirrors: direct (straight from upstream). */
  target: string;
  rep: number;
  values: Record<string, number>;
  errors: number;
  errorDetail?: string;
  /** CPU and memory of the server processes during the sample. */
  server?: Record<string, ProcUsage>;
}

export type BarDef =
  /** Kagami's advantage over `against` (a ratio, oriented so that > 1 is better) is at least `min`. */
  | { kind: "ratio"; metric: string; against: string; min: number; text: string }
  /** Kagami's value is at most `max`. */
  | { kind: "max"; metric: string; max: number; text: string }
  /** Kagami's value exceeds `against`'s by at most `maxDelta`. */
  | { kind: "delta"; metric: string; against: string; maxDelta: number; text: string }
  /** Kagami's value is exactly `value`. */
  | { kind: "equals"; metric: string; value: number; text: string };

export interface WorkloadResult {
  id: string;
  /** Targets that could not be measured, with the reason (e.g. a feature not yet in Kagami). */
  missing?: Record<string, string>;
  group: string;
  title: string;
  /** How the load was made: wrk, ab, node client, ... */
  tool: string;
  params: Record<string, unknown>;
  metrics: MetricDef[];
  samples: Sample[];
  bars: BarDef[];
  status: "ok" | "unavailable" | "failed";
  note?: string;
}

export interface RunResults {
  schema: 1;
  mode: "full" | "smoke";
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: Record<string, string | number>;
  versions: Record<string, string>;
  plan: Record<string, unknown>;
  workloads: WorkloadResult[];
}

export function medianOf(w: WorkloadResult, target: string, metric: string): number | undefined {
  const vals = w.samples
    .filter((s) => s.target === target)
    .map((s) => s.values[metric])
    .filter((v): v is number => v !== undefined && Number.isFinite(v));
  return vals.length ? median(vals) : undefined;
}

/** How much better Kagami is than `other` on `metric`: > 1 means better, whatever the direction. */
export function advantage(value: number | undefined, other: number | undefined, better: Better) {
  if (value === undefined || other === undefined || value <= 0 || other <= 0) return undefined;
  return better === "higher" ? value / other : other / value;
}

export interface BarVerdict {
  bar: BarDef;
  workload: WorkloadResult;
  pass: boolean | undefined;
  /** What was measured, in words: "1.62×", "143 MiB", "+38 ms". */
  measured: string;
}

export function judge(w: WorkloadResult, bar: BarDef): BarVerdict {
  const metric = w.metrics.find((m) => m.key === bar.metric);
  const k = medianOf(w, "kagami", bar.metric);
  const none = { bar, workload: w, pass: undefined, measured: "not measured" };
  if (!metric || k === undefined || w.status !== "ok") return none;
  switch (bar.kind) {
    case "ratio": {
      const a = advantage(k, medianOf(w, bar.against, bar.metric), metric.better);
      if (a === undefined) return none;
      return { bar, workload: w, pass: a >= bar.min, measured: `${a.toFixed(2)}×` };
    }
    case "max":
      return { bar, workload: w, pass: k <= bar.max, measured: `${k.toFixed(0)} ${metric.unit}` };
    case "delta": {
      const o = medianOf(w, bar.against, bar.metric);
      if (o === undefined) return none;
      const d = k - o;
      return {
        bar,
        workload: w,
        pass: d <= bar.maxDelta,
        measured: `${d >= 0 ? "+" : ""}${d.toFixed(0)} ${metric.unit}`,
      };
    }
    case "equals":
      return { bar, workload: w, pass: k === bar.value, measured: `${k}` };
  }
}
