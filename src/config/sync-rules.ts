/**
 * The checks zot runs across fields of `extensions.sync` before it starts (its validateSync):
 * settings that cannot take effect together are refused, not ignored. Types are the schema's.
 */
import type { ConfigProblem } from "./config.ts";
import { parseDuration } from "./duration.ts";
import { isObject, type Json } from "./json.ts";
import { fieldPath } from "./paths.ts";

const durationMs = (v: unknown): number | undefined => (typeof v === "string" ? parseDuration(v) : undefined);

/** Why a content prefix is not a glob zot can compile (an unclosed `[` or `{`, a dangling `\`), if it is not. */
export function globProblem(pattern: string): string | undefined {
  let braces = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      if (i === pattern.length - 1) return "ends with an escaping '\\'";
      i++;
    } else if (c === "[") {
      let j = i + 1;
      if (pattern[j] === "!" || pattern[j] === "^") j++;
      // A `]` right after the opening bracket is a member of the class, not its end.
      if (pattern[j] === "]") j++;
      while (j < pattern.length && pattern[j] !== "]") j += pattern[j] === "\\" ? 2 : 1;
      if (j >= pattern.length) return "has a '[' with no closing ']'";
      i = j;
    } else if (c === "{") braces++;
    else if (c === "}" && braces > 0) braces--;
  }
  return braces > 0 ? "has a '{' with no closing '}'" : undefined;
}

function checkRegistry(reg: Json, at: (string | number)[], compat: boolean, out: ConfigProblem[]): void {
  const path = (...rest: (string | number)[]) => fieldPath([...at, ...rest]);
  const retryDelay = durationMs(reg.retryDelay);
  if (reg.maxRetries !== undefined && reg.retryDelay === undefined) {
    out.push({ path: path("maxRetries"), message: "needs retryDelay (zot requires both together)" });
  }
  if (reg.maxRetryDelay !== undefined) {
    const max = durationMs(reg.maxRetryDelay);
    if (reg.retryDelay === undefined) {
      out.push({ path: path("maxRetryDelay"), message: "needs retryDelay (zot requires both together)" });
    } else if (max !== undefined && retryDelay !== undefined && max < retryDelay) {
      out.push({
        path: path("maxRetryDelay"),
        message: `must not be below retryDelay (${String(reg.retryDelay)})`,
      });
    }
  }
  const check = durationMs(reg.manifestCheckInterval);
  if (check !== undefined && check > 0 && reg.onDemand !== true) {
    out.push({
      path: path("manifestCheckInterval"),
      message: "only throttles on-demand checks, so it needs onDemand: true (zot refuses it otherwise)",
    });
  }
  if (reg.preserveDigest === true && !compat) {
    out.push({
      path: path("preserveDigest"),
      message: 'needs http.compat: ["docker2s2"], as in zot (Docker manifests are kept, not converted)',
    });
  }
  if (!Array.isArray(reg.content)) return;
  reg.content.forEach((c, i) => {
    if (!isObject(c) || typeof c.prefix !== "string") return;
    const bad = globProblem(c.prefix);
    if (bad) out.push({ path: path("content", i, "prefix"), message: `is not a valid glob: it ${bad}` });
    if (c.stripPrefix === true && c.destination === "/" && !c.prefix.includes("/*")) {
      out.push({
        path: path("content", i, "stripPrefix"),
        message:
          "with destination '/' needs a glob in prefix (such as 'repo/*'): stripping a whole name leaves nothing to store it under",
      });
    }
  });
}

/** Cross-field problems of a key-normalised config's `extensions.sync`. */
export function syncRuleProblems(raw: Json): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const ext = raw.extensions;
  const sync = isObject(ext) ? ext.sync : undefined;
  if (!isObject(sync) || !Array.isArray(sync.registries)) return out;
  const http = raw.http;
  const compat = isObject(http) && Array.isArray(http.compat) && http.compat.includes("docker2s2");
  sync.registries.forEach((r, i) => {
    if (isObject(r)) checkRegistry(r, ["extensions", "sync", "registries", i], compat, out);
  });
  return out;
}
