import type { CacheQuotaOptions } from "../store/quota.ts";
import { defaultKeepPulledWithinMs } from "../store/quota.ts";
import type { RetentionOptions } from "../store/retention.ts";
import { parseDuration } from "./duration.ts";
import { parseSize } from "./size.ts";

/** storage.retention as zot's config spells it (already validated against the schema). */
export interface RawRetention {
  dryRun?: boolean;
  delay?: string;
  policies?: {
    repositories?: string[];
    deleteReferrers?: boolean;
    deleteUntagged?: boolean;
    keepTags?: {
      patterns?: string[];
      pulledWithin?: string;
      pushedWithin?: string;
      mostRecentlyPushedCount?: number;
      mostRecentlyPulledCount?: number;
    }[];
  }[];
}

export interface RawCacheQuota {
  maxSize?: string | number;
  minFreeSpace?: string | number;
  keepPulledWithin?: string;
  dryRun?: boolean;
}

/** zot's default for retention.delay: untagged manifests younger than a day stay. */
const defaultRetentionDelayMs = 24 * 3_600_000;

function retentionOptions(r: RawRetention): RetentionOptions {
  return {
    dryRun: r.dryRun ?? false,
    delayMs: r.delay !== undefined ? parseDuration(r.delay)! : defaultRetentionDelayMs,
    policies: (r.policies ?? []).map((p) => ({
      repositories: p.repositories ?? [],
      deleteReferrers: p.deleteReferrers ?? false,
      // zot deletes untagged manifests of a repository a policy names unless told otherwise.
      deleteUntagged: p.deleteUntagged ?? true,
      keepTags: (p.keepTags ?? []).map((k) => {
        const rule: RetentionOptions["policies"][number]["keepTags"][number] = { patterns: k.patterns ?? [] };
        if (k.pulledWithin !== undefined) rule.pulledWithinMs = parseDuration(k.pulledWithin)!;
        if (k.pushedWithin !== undefined) rule.pushedWithinMs = parseDuration(k.pushedWithin)!;
        if (k.mostRecentlyPushedCount) rule.mostRecentlyPushedCount = k.mostRecentlyPushedCount;
        if (k.mostRecentlyPulledCount) rule.mostRecentlyPulledCount = k.mostRecentlyPulledCount;
        return rule;
      }),
    })),
  };
}

function cacheQuotaOptions(q: RawCacheQuota): CacheQuotaOptions {
  const o: CacheQuotaOptions = {
    dryRun: q.dryRun ?? false,
    keepPulledWithinMs:
      q.keepPulledWithin !== undefined ? parseDuration(q.keepPulledWithin)! : defaultKeepPulledWithinMs,
  };
  if (q.maxSize !== undefined) o.maxSize = parseSize(q.maxSize)!;
  if (q.minFreeSpace !== undefined) o.minFreeSpace = parseSize(q.minFreeSpace)!;
  return o;
}

/** A store's retention policies and cache quota, as the store layer takes them. */
export function storeHousekeeping(raw: { retention?: RawRetention; cacheQuota?: RawCacheQuota }): {
  retention?: RetentionOptions;
  cacheQuota?: CacheQuotaOptions;
} {
  const out: { retention?: RetentionOptions; cacheQuota?: CacheQuotaOptions } = {};
  if (raw.retention) out.retention = retentionOptions(raw.retention);
  if (raw.cacheQuota) out.cacheQuota = cacheQuotaOptions(raw.cacheQuota);
  return out;
}
