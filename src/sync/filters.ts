import semver from "semver";
import type { SyncContent } from "../config/config.ts";
import { compileGoRegexp } from "../config/go-regexp.ts";

/**
 * What zot's semver filter counts as a version: Masterminds/semver v1.5.0 `NewVersion`, which zot
 * imports. It is lenient: an optional lowercase `v`, one to three numeric parts with leading zeros
 * allowed (`22.04`, `2024.01.15`), and pre-release and build parts with any dot-separated
 * alphanumeric identifiers (`1.2.3-01`). Four parts (`1.2.3.4`), an empty identifier (`1.0-`,
 * `1.0-a..b`) and a number too large for a 64-bit integer are not versions.
 */
const versionSyntax =
  /^v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;
const int64Max = 2n ** 63n - 1n;

/** Whether zot's `tags.semver: true` keeps the tag. */
export function isZotVersion(tag: string): boolean {
  const m = versionSyntax.exec(tag);
  return m !== null && [m[1], m[2], m[3]].every((n) => n === undefined || BigInt(n) <= int64Max);
}

/**
 * A tag as a version for Kagami's semver ranges: the zot reading, with missing parts as 0 and
 * leading zeros dropped (`22.04` is 22.4.0). Undefined for what zot does not count as a version, and
 * for numbers beyond what the range library holds (2^53).
 */
export function tagVersion(tag: string): semver.SemVer | undefined {
  if (!isZotVersion(tag)) return undefined;
  const m = versionSyntax.exec(tag)!;
  const core = [m[1], m[2], m[3]].map((n) => (n === undefined ? "0" : BigInt(n).toString())).join(".");
  const text = `${core}${m[4] ? `-${m[4]}` : ""}${m[5] ? `+${m[5]}` : ""}`;
  try {
    // loose: pre-release numbers with leading zeros (`-01`) are versions to zot.
    return semver.parse(text, { loose: true }) ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why a content rule's `tags` filters refuse a tag, or undefined when they let it through. The
 * order is zot's: regex, then excludeRegex, then semver. Regexes are Go's and match anywhere in the
 * tag, as Go's MatchString does; anchor them with `^…$` to match whole tags.
 */
export function tagRefusal(tag: string, content: SyncContent | undefined): string | undefined {
  const t = content?.tags;
  if (!t) return undefined;
  if (t.regex !== undefined) {
    // zot keeps no tag at all under an empty regex (its filter returns an empty list for "").
    if (t.regex === "") return `tags.regex is empty, which in zot keeps no tag`;
    if (!compileGoRegexp(t.regex).test(tag)) return `'${tag}' does not match tags.regex '${t.regex}'`;
  }
  if (t.excludeRegex && compileGoRegexp(t.excludeRegex).test(tag))
    return `'${tag}' matches tags.excludeRegex '${t.excludeRegex}'`;
  if (t.semver === true && !isZotVersion(tag))
    return `'${tag}' is not a version (tags.semver: true keeps only tags such as 1.2.3, v1.2 or 22.04)`;
  if (typeof t.semver === "string") {
    const v = tagVersion(tag);
    if (!v) return `'${tag}' is not a version (tags.semver '${t.semver}' keeps only versions in that range)`;
    if (!semver.satisfies(v, t.semver, { includePrerelease: false }))
      return `'${tag}' is not in tags.semver range '${t.semver}'`;
  }
  return undefined;
}

export function tagAllowed(tag: string, content: SyncContent | undefined): boolean {
  return tagRefusal(tag, content) === undefined;
}

export function filterTags(tags: string[], content: SyncContent | undefined): string[] {
  return tags.filter((t) => tagAllowed(t, content));
}

/** What a content rule's tag filters let through, for messages: "tags that match regex '^v1' and …". */
export function describeFilters(content: SyncContent | undefined): string {
  const t = content?.tags;
  const parts: string[] = [];
  if (t?.regex !== undefined) parts.push(`match tags.regex '${t.regex}'`);
  if (t?.excludeRegex) parts.push(`do not match tags.excludeRegex '${t.excludeRegex}'`);
  if (t?.semver === true) parts.push("are versions (tags.semver: true)");
  else if (typeof t?.semver === "string") parts.push(`are versions in tags.semver range '${t.semver}'`);
  if (parts.length === 0) return "every tag";
  return `tags that ${parts.join(" and ")}`;
}

/**
 * The image a cosign-style accessory tag belongs to: `sha256-<hex>.sig`, `.att` and `.sbom` (cosign's
 * signature, attestation and SBOM tags) and `sha256-<hex>` (the referrers tag schema of registries
 * without the referrers API) name their subject's digest. Undefined for any other tag.
 */
export function accessorySubject(tag: string): string | undefined {
  const m = /^sha256-([0-9a-f]{64})(?:\.(?:sig|att|sbom))?$/.exec(tag);
  return m ? `sha256:${m[1]}` : undefined;
}
