/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4), for tests: every sample
 * must belong to a family declared by `# TYPE`, label values are unescaped, and a malformed line
 * is an error naming it, so a scrape that Prometheus would refuse fails the test here too.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  types: Map<string, string>;
  samples: Sample[];
  /** Sum of the samples of `name` whose labels include all of `labels` (0 when none). */
  sum(name: string, labels?: Record<string, string>): number;
  /** The label sets present for `name`. */
  series(name: string): Record<string, string>[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const suffixes: Record<string, string[]> = {
  counter: [""],
  gauge: [""],
  untyped: [""],
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["", "_sum", "_count"],
};

function parseValue(text: string, line: string): number {
  // Prometheus reads values with Go's ParseFloat, which takes these in any case (prom-client writes "Nan").
  const word = text.toLowerCase();
  if (word === "+inf" || word === "inf") return Number.POSITIVE_INFINITY;
  if (word === "-inf") return Number.NEGATIVE_INFINITY;
  if (word === "nan") return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value in: ${line}`);
  return Number(text);
}

/** Reads `{a="x",b="y"}` starting at `text[0] === "{"`; returns the labels and the rest of the line. */
function parseLabels(text: string, line: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = text.slice(i, eq);
    if (!labelName.test(name) || name in labels) throw new Error(`bad label name '${name}' in: ${line}`);
    if (text[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`);
    let value = "";
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        if (next === "n") value += "\n";
        else if (next === "\\" || next === '"') value += next;
        else throw new Error(`bad escape in: ${line}`);
      } else value += text[j];
    }
    if (j >= text.length) throw new Error(`unterminated label value in: ${line}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") throw new Error(`bad label separator in: ${line}`);
  }
}

function familyOf(name: string, types: Map<string, string>): string | undefined {
  for (const [family, type] of types) {
    for (const s of suffixes[type] ?? [""]) if (name === family + s) return family;
  }
  return undefined;
}

export function parsePrometheusText(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) continue;
      if (!metricName.test(m[2]!)) throw new Error(`bad metric name in: ${line}`);
      if (m[1] === "TYPE") {
        if (!(m[3]! in suffixes)) throw new Error(`unknown type in: ${line}`);
        if (types.has(m[2]!)) throw new Error(`second TYPE for ${m[2]}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd < 0) throw new Error(`no value in: ${line}`);
    const name = line.slice(0, nameEnd);
    if (!metricName.test(name)) throw new Error(`bad metric name in: ${line}`);
    let labels: Record<string, string> = {};
    let rest = line.slice(nameEnd);
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, line));
    const fields = rest.trim().split(/\s+/);
    if (fields.length < 1 || fields.length > 2 || fields[0] === "") throw new Error(`bad sample: ${line}`);
    if (!familyOf(name, types)) throw new Error(`sample of undeclared family: ${line}`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`duplicate sample: ${line}`);
    seen.add(key);
    samples.push({ name, labels, value: parseValue(fields[0]!, line) });
  }
  const matching = (name: string, want: Record<string, string>) =>
    samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
  return {
    types,
    samples,
    sum: (name, want = {}) => matching(name, want).reduce((n, s) => n + s.value, 0),
    series: (name) => matching(name, {}).map((s) => s.labels),
  };
}
