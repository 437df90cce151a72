import { globMatch } from "../config/glob.ts";
import { compileGoRegexp } from "../config/go-regexp.ts";
import type { Metadata } from "./metadata.ts";

/** One `keepTags` entry of zot's retention policy; durations in milliseconds. */
export interface KeepTagsRule {
  /** Go regular expressions; a tag belongs to the first entry one of whose patterns matches (none: every tag). */
  patterns: string[];
  pulledWithinMs?: number;
  pushedWithinMs?: number;
  mostRecentlyPushedCount?: number;
  mostRecentlyPulledCount?: number;
}

export interface RetentionPolicy {
  /** Globs over repository names (`*` within a path segment, `**` across them); the first policy that matches applies. */
  repositories: string[];
  deleteReferrers: boolean;
  deleteUntagged: boolean;
  keepTags: KeepTagsRule[];
}

/** zot's storage.retention. */
export interface RetentionOptions {
  dryRun: boolean;
  /** Untagged manifests and orphaned referrers pushed more recently than this stay. */
  delayMs: number;
  policies: RetentionPolicy[];
}

export interface RetentionAction {
  repo: string;
  digest: string;
  /** A tag removed, or a manifest deleted (with every tag still on it). */
  kind: "tag" | "manifest";
  tag?: string;
  reason: string;
}

interface ManifestFacts {
  digest: string;
  subject: string | null;
  pushedAt: number;
  pulledAt: number;
}

interface TagFacts extends ManifestFacts {
  tag: string;
}

/**
 * cosign's tag for the signature of `sha256:<hex>`, and the referrers tag schema's `sha256-<hex>`
 * (zot's IsCosignTag and IsReferrersTag; `.att` and `.sbom` are plain tags there).
 */
const cosignSignatureTag = /^sha256-([0-9a-f]{64})(?:\.sig)?$/;

/** The policy zot applies to `repo`: the first whose globs match; undefined leaves the repository alone. */
export function policyFor(opts: RetentionOptions, repo: string): RetentionPolicy | undefined {
  return opts.policies.find((p) => p.repositories.some((g) => globMatch(g, repo)));
}

function newestFirst(tags: TagFacts[], key: "pushedAt" | "pulledAt", n: number): TagFacts[] {
  return [...tags].sort((a, b) => b[key] - a[key]).slice(0, n);
}

/** Which tags a policy keeps, and why; a tag kept by any rule stays (zot ORs the rules). */
function keptTags(policy: RetentionPolicy, tags: TagFacts[], now: number): Map<string, string> {
  const kept = new Map<string, string>();
  if (policy.keepTags.length === 0) {
    for (const t of tags) kept.set(t.tag, "no keepTags rules: every tag is kept");
    return kept;
  }
  const groups = policy.keepTags.map(() => [] as TagFacts[]);
  for (const t of tags) {
    const i = policy.keepTags.findIndex(
      (k) => k.patterns.length === 0 || k.patterns.some((p) => compileGoRegexp(p).test(t.tag)),
    );
    if (i >= 0) groups[i]!.push(t);
  }
  policy.keepTags.forEach((rule, i) => {
    const group = groups[i]!;
    const keep = (list: TagFacts[], why: string) => {
      for (const t of list) if (!kept.has(t.tag)) kept.set(t.tag, why);
    };
    const hasRule =
      rule.mostRecentlyPulledCount !== undefined ||
      rule.mostRecentlyPushedCount !== undefined ||
      rule.pulledWithinMs !== undefined ||
      rule.pushedWithinMs !== undefined;
    if (!hasRule) keep(group, "patterns");
    if (rule.mostRecentlyPulledCount !== undefined)
      keep(
        newestFirst(group, "pulledAt", rule.mostRecentlyPulledCount),
        `mostRecentlyPulledCount:${rule.mostRecentlyPulledCount}`,
      );
    if (rule.mostRecentlyPushedCount !== undefined)
      keep(
        newestFirst(group, "pushedAt", rule.mostRecentlyPushedCount),
        `mostRecentlyPushedCount:${rule.mostRecentlyPushedCount}`,
      );
    if (rule.pulledWithinMs !== undefined) {
      const since = now - rule.pulledWithinMs;
      // As in zot: an image pushed within the window has not had the time to be pulled, so it stays.
      keep(
        group.filter((t) => t.pulledAt > since || t.pushedAt > since),
        "pulledWithin",
      );
    }
    if (rule.pushedWithinMs !== undefined) {
      const since = now - rule.pushedWithinMs;
      keep(
        group.filter((t) => t.pushedAt > since),
        "pushedWithin",
      );
    }
  });
  return kept;
}

/**
 * What zot's retention would remove from one store at `now`: tags no keepTags rule keeps, then
 * (deleteUntagged) manifests that no kept tag, kept index or kept subject holds, and (deleteReferrers)
 * referrers whose subject is gone, both only when pushed longer ago than the delay. Nothing is changed.
 */
export function planRetention(meta: Metadata, opts: RetentionOptions, now: number): RetentionAction[] {
  meta.pulls.flush();
  const db = meta.db;
  const repos = db.prepare("SELECT name FROM repos ORDER BY name").pluck().all() as string[];
  const manifestsOf = db.prepare(
    `SELECT digest, subject, coalesce(pushed_at, created_at) AS pushedAt, coalesce(pulled_at, 0) AS pulledAt
       FROM manifests WHERE repo = ?`,
  );
  const tagsOf = db.prepare("SELECT tag, digest FROM tags WHERE repo = ? ORDER BY tag");
  const childrenOf = db.prepare(
    "SELECT parent, child FROM manifest_refs WHERE repo = ? AND kind = 'manifest'",
  );
  const actions: RetentionAction[] = [];
  for (const repo of repos) {
    const policy = policyFor(opts, repo);
    if (!policy) continue;
    const manifests = new Map<string, ManifestFacts>();
    for (const m of manifestsOf.all(repo) as ManifestFacts[]) manifests.set(m.digest, m);
    const tags: TagFacts[] = [];
    // Cosign's signature tags (and referrers-schema tags), by the manifest that holds them: zot files
    // these as belonging to the signed image, not as tags, so no keepTags rule ever removes them; they
    // go (deleteReferrers) when the image they name does.
    const signatures = new Map<string, { tag: string; signed: string }[]>();
    for (const t of tagsOf.all(repo) as { tag: string; digest: string }[]) {
      const m = manifests.get(t.digest);
      if (!m) continue;
      const signed = cosignSignatureTag.exec(t.tag);
      if (signed) {
        const list = signatures.get(t.digest) ?? [];
        list.push({ tag: t.tag, signed: `sha256:${signed[1]}` });
        signatures.set(t.digest, list);
      } else tags.push({ ...m, tag: t.tag });
    }
    const kept = keptTags(policy, tags, now);
    const tagged = new Set<string>();
    for (const t of tags) {
      if (kept.has(t.tag)) tagged.add(t.digest);
      else
        actions.push({ repo, digest: t.digest, kind: "tag", tag: t.tag, reason: "kept by no keepTags rule" });
    }
    const edges = childrenOf.all(repo) as { parent: string; child: string }[];
    const alive = new Set(manifests.keys());
    const old = (m: ManifestFacts) => m.pushedAt < now - opts.delayMs;
    for (let changed = true; changed; ) {
      changed = false;
      for (const digest of alive) {
        const m = manifests.get(digest)!;
        if (tagged.has(digest)) continue;
        if (edges.some((e) => e.child === digest && alive.has(e.parent))) continue;
        let reason: string | undefined;
        const sigs = signatures.get(digest);
        if (sigs) {
          if (!policy.deleteReferrers || !old(m) || sigs.some((g) => alive.has(g.signed))) continue;
          reason = "cosign signature or referrers tag of a manifest that is gone";
          for (const g of sigs) actions.push({ repo, digest, kind: "tag", tag: g.tag, reason });
        } else if (m.subject !== null) {
          if (policy.deleteReferrers && !alive.has(m.subject) && old(m))
            reason = "referrer of a manifest that is gone";
        } else if (policy.deleteUntagged && old(m)) reason = "untagged";
        if (reason === undefined) continue;
        alive.delete(digest);
        actions.push({ repo, digest, kind: "manifest", reason });
        changed = true;
      }
    }
  }
  return actions;
}

/** Carries out a plan: tags first, then manifests (their blobs go at the next garbage collection). */
export function applyRetention(meta: Metadata, actions: RetentionAction[]): void {
  meta.db.transaction(() => {
    for (const a of actions) if (a.kind === "tag") meta.deleteTag(a.repo, a.tag!);
    for (const a of actions) if (a.kind === "manifest") meta.deleteManifest(a.repo, a.digest);
  })();
}
