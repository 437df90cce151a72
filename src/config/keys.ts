/**
 * zot reads field names in any case (viper lowercases every key) and refuses a key it does not
 * know. This brings a raw config to the canonical spelling the JSON Schema names, so the rest of
 * the config layer (and the security checks) sees one spelling, and lists every key no schema
 * node knows. The schema is the one list of field names: an object node with `properties` names
 * its fields; `additionalProperties` marks keys that are user data (repository patterns, group
 * names, sub-path prefixes), kept exactly as written; an object node with neither is a section
 * Kagami does not look into (a storage driver's settings, an extension it lacks).
 */
import type { ConfigProblem } from "./config.ts";
import { isObject } from "./json.ts";
import { fieldPath } from "./paths.ts";

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  items?: SchemaNode;
}

export interface NormalizedKeys {
  value: unknown;
  problems: ConfigProblem[];
}

/** Edits (insert, delete, replace, swap of neighbours) between two names: `levle` is one from `level`. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known name closest to a misspelt key, when it is close enough to be what was meant. */
export function closestName(key: string, names: string[]): string | undefined {
  const k = key.toLowerCase();
  // Short names differ by a letter or two from many others; only suggest near misses.
  const limit = Math.max(1, Math.min(3, Math.floor(k.length / 3)));
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = editDistance(k, name.toLowerCase());
    if (d <= limit && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

function walk(value: unknown, node: SchemaNode, path: (string | number)[], out: ConfigProblem[]): unknown {
  if (Array.isArray(value)) {
    return node.items ? value.map((v, i) => walk(v, node.items!, [...path, i], out)) : value;
  }
  const extra = typeof node.additionalProperties === "object" ? node.additionalProperties : undefined;
  if (!isObject(value) || (!node.properties && !extra)) return value;
  const names = Object.keys(node.properties ?? {});
  const byLower = new Map(names.map((n) => [n.toLowerCase(), n]));
  const result: Record<string, unknown> = {};
  const writtenAs = new Map<string, string>();
  for (const [key, child] of Object.entries(value)) {
    const canonical = node.properties?.[key] ? key : byLower.get(key.toLowerCase());
    if (canonical !== undefined) {
      const earlier = writtenAs.get(canonical);
      if (earlier !== undefined) {
        out.push({
          path: fieldPath([...path, key]),
          message: `'${earlier}' is written too; field names match in any case, so write '${canonical}' once`,
        });
        continue;
      }
      writtenAs.set(canonical, key);
      result[canonical] = walk(child, node.properties![canonical]!, [...path, canonical], out);
    } else if (extra) {
      result[key] = walk(child, extra, [...path, key], out);
    } else {
      const meant = closestName(key, names);
      out.push({
        path: fieldPath([...path, key]),
        message: `unknown field${meant ? `; did you mean '${meant}'?` : ""} (zot refuses unknown fields, and so does Kagami)`,
      });
    }
  }
  return result;
}

/** Rewrites every known key to its canonical spelling, drops unknown keys and lists them as problems. */
export function normalizeKeys(raw: Record<string, unknown>, schema: object): NormalizedKeys {
  const problems: ConfigProblem[] = [];
  const value = walk(raw, schema as SchemaNode, [], problems);
  const known = Object.keys(value as object).length;
  if (known === 0 && Object.keys(raw).length > 0) {
    problems.push({
      path: "",
      message:
        "no field of zot's configuration format (distSpecVersion, storage, http, log, extensions) is here; is this the right file?",
    });
  }
  return { value, problems };
}
