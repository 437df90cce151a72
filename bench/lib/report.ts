/**
 * The human side of a run: the results table (medians, ratios, bars) written into a Markdown file
 * between two markers, so the prose around it (what was measured how, what was changed) survives a
 * re-run.
 */
import { existsSync, readFileSync } from "node:fs";
import {
  advantage,
  type BarVerdict,
  judge,
  type MetricDef,
  medianOf,
  type RunResults,
  type WorkloadResult,
} from "./results.ts";
import { fmt } from "./util.ts";

export const startMarker = "<!-- bench:results:start -->";
export const endMarker = "<!-- bench:results:end -->";

const targetNames: Record<string, string> = {
  kagami: "Kagami",
  distribution: "distribution",
  nginx: "nginx (static)",
  direct: "direct from upstream",
};

/** Words before a secondary value, for results written before metrics carried their own. */
const defaultPrefix: Record<string, string> = {
  p99Ms: "p99",
  layerFirstByteMs: "first byte",
  upstreamMB: "fetched",
};

function unitText(m: MetricDef, v: number | undefined): string {
  if (v === undefined) return "–";
  return `${fmt(v)} ${m.unit}`;
}

function cell(w: WorkloadResult, target: string, primary: MetricDef, secondary: MetricDef[]): string {
  if (w.missing?.[target]) return "not yet available";
  const v = medianOf(w, target, primary.key);
  if (v === undefined) return "–";
  const extra = secondary
    .map((m) => {
      const x = medianOf(w, target, m.key);
      const prefix = m.prefix ?? defaultPrefix[m.key];
      return x === undefined ? undefined : `${prefix ? `${prefix} ` : ""}${unitText(m, x)}`;
    })
    .filter((x) => x !== undefined);
  const errs = w.samples.filter((s) => s.target === target).reduce((a, s) => a + s.errors, 0);
  return [unitText(primary, v), ...extra].join(" · ") + (errs ? ` ⚠ ${errs} errors` : "");
}

function referenceTarget(w: WorkloadResult): string | undefined {
  if (w.samples.some((s) => s.target === "nginx") || w.missing?.nginx) return "nginx";
  if (w.samples.some((s) => s.target === "direct")) return "direct";
  return undefined;
}

function mark(v: BarVerdict): string {
  if (v.pass === undefined) return `– ${v.bar.text}`;
  return `${v.pass ? "✓" : "✗"} ${v.bar.text} (${v.measured})`;
}

export interface Row {
  workload: string;
  title: string;
  metric: string;
  unit: string;
  better: string;
  medians: Record<string, number | undefined>;
  /** Kagami's advantage over distribution (> 1: Kagami better). */
  ratio: number | undefined;
  bars: { text: string; pass: boolean | undefined; measured: string }[];
}

/** One row per (workload, primary metric). */
export function rows(results: RunResults): Row[] {
  const out: Row[] = [];
  for (const w of results.workloads) {
    const primaries = w.metrics.filter((m) => m.table === "primary");
    for (const m of primaries) {
      const targets = [...new Set(w.samples.map((s) => s.target))];
      const medians = Object.fromEntries(targets.map((t) => [t, medianOf(w, t, m.key)]));
      out.push({
        workload: w.id,
        title: w.title,
        metric: m.label,
        unit: m.unit,
        better: m.better,
        medians,
        ratio: advantage(medianOf(w, "kagami", m.key), medianOf(w, "distribution", m.key), m.better),
        bars: w.bars
          .filter((b) => b.metric === m.key)
          .map((b) => {
            const v = judge(w, b);
            return { text: b.text, pass: v.pass, measured: v.measured };
          }),
      });
    }
  }
  return out;
}

export function resultsSection(results: RunResults): string {
  const lines: string[] = [];
  const m = results.machine;
  const v = results.versions;
  const date = results.startedAt.slice(0, 16).replace("T", " ");
  lines.push(
    `### Results: ${results.mode} run of ${date} UTC (${(results.durationSeconds / 60).toFixed(1)} minutes)`,
    "",
    `- Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB RAM, Linux ${m.kernel}, storage on ${m.filesystem}.`,
    `- Software: Kagami ${v.kagami}; Node.js ${v.node}; ${v.distribution}; ${v.nginx}; ${v.wrk}; ${v.ab}.`,
    `- Each number is the median of ${results.plan.reps} run${results.plan.reps === 1 ? "" : "s"}; runs alternate between the servers, the order rotating every repetition.`,
    "- **ratio** is Kagami's advantage over distribution, oriented so that above 1 means Kagami is better:" +
      " Kagami ÷ distribution for rates, distribution ÷ Kagami for times, latencies and memory.",
    "- MB = 10⁶ bytes; blob sizes are binary (MiB, GiB).",
    "",
    "| workload | Kagami | distribution | static nginx / direct pull | ratio | bar |",
    "| --- | --- | --- | --- | --- | --- |",
  );
  const verdicts: BarVerdict[] = [];
  for (const w of results.workloads) {
    if (w.status === "unavailable") {
      lines.push(`| ${w.title} | ${w.note ?? "not available"} | | | | |`);
      continue;
    }
    const primaries = w.metrics.filter((x) => x.table === "primary");
    const secondary = w.metrics.filter((x) => x.table === "secondary");
    const ref = referenceTarget(w);
    primaries.forEach((p, i) => {
      const title = `${w.title}${primaries.length > 1 ? ` — ${p.label}` : ""}${w.status === "failed" ? " (failed)" : ""}`;
      const sec = i === 0 ? secondary : [];
      const ratio = advantage(medianOf(w, "kagami", p.key), medianOf(w, "distribution", p.key), p.better);
      const bars = w.bars.filter((b) => b.metric === p.key).map((b) => judge(w, b));
      verdicts.push(...bars);
      lines.push(
        `| ${title} | ${cell(w, "kagami", p, sec)} | ${cell(w, "distribution", p, sec)} | ${
          ref ? cell(w, ref, p, sec) : ""
        } | ${ratio === undefined ? "–" : `${ratio.toFixed(2)}×`} | ${bars.map(mark).join("; ")} |`,
      );
    });
  }
  const failed = results.workloads.filter((w) => w.status === "failed");
  const met = verdicts.filter((x) => x.pass === true);
  const missed = verdicts.filter((x) => x.pass === false);
  const unmeasured = verdicts.filter((x) => x.pass === undefined);
  lines.push(
    "",
    `**Bars: ${met.length} met, ${missed.length} missed, ${unmeasured.length} not measured.**`,
    "",
  );
  if (missed.length) {
    lines.push("Missed:", "");
    for (const x of missed) lines.push(`- ${x.workload.title}: ${x.bar.text}; measured ${x.measured}.`);
    lines.push("");
  }
  if (unmeasured.length) {
    lines.push("Not measured:", "");
    for (const x of unmeasured) {
      const why = x.workload.missing?.kagami ?? x.workload.note ?? "no Kagami sample";
      lines.push(`- ${x.workload.title}: ${x.bar.text} — ${why}.`);
    }
    lines.push("");
  }
  if (failed.length) {
    lines.push("Failed workloads:", "");
    for (const w of failed) lines.push(`- ${w.title}: ${w.note ?? ""}`.replace(/\n/g, " "));
    lines.push("");
  }
  return lines.join("\n");
}

const skeleton = (section: string) =>
  [
    "# Benchmarks",
    "",
    "Kagami side by side with CNCF distribution on one machine, in one run (`npm run bench`).",
    "",
    startMarker,
    section,
    endMarker,
    "",
  ].join("\n");

/** The Markdown file with the results section replaced (or a new file around it). */
export function renderMarkdown(existingFile: string | undefined, results: RunResults): string {
  const section = resultsSection(results);
  if (existingFile && existsSync(existingFile)) {
    const text = readFileSync(existingFile, "utf8");
    const a = text.indexOf(startMarker);
    const b = text.indexOf(endMarker);
    if (a >= 0 && b > a) return `${text.slice(0, a + startMarker.length)}\n${section}\n${text.slice(b)}`;
  }
  return skeleton(section);
}

/** Targets named for a reader. */
export function targetName(t: string): string {
  return targetNames[t] ?? t;
}
