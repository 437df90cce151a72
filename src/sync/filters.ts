import semver from "semver";
import type { SyncContent } from "../config/config.ts";

/**
 * A tag as a semantic version, read the lenient way zot's library reads them: `v1.2.3`, `1.2`,
 * `1` and pre-releases count; `latest` does not.
 */
export function tagVersion(tag: string): semver.SemVer | undefined {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.exec(tag);
  if (!m) return undefined;
  return semver.parse(`${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}${m[4] ?? ""}${m[5] ?? ""}`) ?? undefined;
}

/** Whether a tag passes a content rule's `tags` filters: regex, then excludeRegex, then semver. */
export function tagAllowed(tag: string, content: SyncContent | undefined): boolean {
  const t = content?.tags;
  if (!t) return true;
  if (t.regex !== undefined && t.regex !== "" && !new RegExp(t.regex).test(tag)) return false;
  if (t.excludeRegex !== undefined && t.excludeRegex !== "" && new RegExp(t.excludeRegex).test(tag))
    return false;
  if (t.semver === true || typeof t.semver === "string") {
    const v = tagVersion(tag);
    if (!v) return false;
    if (typeof t.semver === "string" && !semver.satisfies(v, t.semver, { includePrerelease: false }))
      return false;
  }
  return true;
}

export function filterTags(tags: string[], content: SyncContent | undefined): string[] {
  return tags.filter((t) => tagAllowed(t, content));
}

/** Describes a content rule's tag filters for messages. */
export function describeFilters(content: SyncContent | undefined): string {
  const t = content?.tags;
  if (!t) return "no tag filters";
  const parts: string[] = [];
  if (t.regex) parts.push(`regex ${t.regex}`);
  if (t.excludeRegex) parts.push(`excludeRegex ${t.excludeRegex}`);
  if (t.semver === true) parts.push("semver");
  else if (typeof t.semver === "string") parts.push(`semver ${t.semver}`);
  return parts.join(", ");
}
