import type { Logger } from "pino";
import type { GcResult } from "../store/gc.ts";
import { applyQuota, type Busy, planQuota, type QuotaPlan, quotaMayBeExceeded } from "../store/quota.ts";
import { applyRetention, planRetention, type RetentionAction } from "../store/retention.ts";
import type { StoreHousekeeping } from "./stores.ts";

export interface HousekeepingOptions {
  /** Report only, whatever the config says (`kagami gc --dry-run`). */
  dryRun: boolean;
  gcDelayMs: number;
  now: number;
  busy?: Busy;
  logger?: Logger;
}

export interface HousekeepingReport {
  root: string;
  retention: RetentionAction[];
  /** Whether the retention actions were carried out (not a dry run). */
  retentionApplied: boolean;
  quota?: QuotaPlan;
  quotaApplied: boolean;
  gc?: GcResult;
}

function logRetention(
  logger: Logger | undefined,
  actions: RetentionAction[],
  dryRun: boolean,
  root: string,
): void {
  for (const a of actions) {
    logger?.info(
      {
        module: "retention",
        dryRun,
        store: root,
        repository: a.repo,
        digest: a.digest,
        tag: a.tag,
        reason: a.reason,
      },
      a.kind === "tag" ? "retention: delete tag" : "retention: delete manifest",
    );
  }
}

/** Logs what the quota did; a quota it could not meet is a warning, before the disk is full. */
export function logQuota(logger: Logger | undefined, plan: QuotaPlan, dryRun: boolean, root: string): void {
  for (const e of plan.evict) {
    logger?.info(
      {
        module: "cacheQuota",
        dryRun,
        store: root,
        repository: e.repo,
        digest: e.digest,
        tags: e.tags,
        bytes: e.bytes,
        lastUsed: new Date(e.lastUsed).toISOString(),
      },
      "cache quota: evict least recently pulled image",
    );
  }
  if (plan.freedBytes < plan.needBytes) {
    logger?.warn(
      {
        module: "cacheQuota",
        store: root,
        needBytes: plan.needBytes,
        freedBytes: plan.freedBytes,
        mirroredBytes: plan.mirroredBytes,
        freeBytes: plan.freeBytes,
        protectedImages: plan.protectedImages,
      },
      `cache quota of ${root} cannot be met: ${plan.needBytes - plan.freedBytes} more bytes must go, but the rest ` +
        "is pushed locally, held by pushed images, pulled within keepPulledWithin or being fetched. " +
        "Give the store more disk or raise cacheQuota.maxSize before the disk fills.",
    );
  }
}

/** Evicts mirrored images when the store is over its quota; cheap when it is not (a sum and a statfs). */
export async function enforceQuota(
  h: StoreHousekeeping,
  o: Omit<HousekeepingOptions, "gcDelayMs">,
): Promise<QuotaPlan | undefined> {
  const q = h.cacheQuota;
  if (!q || !(await quotaMayBeExceeded(h.store.meta, h.store.root, q))) return undefined;
  const plan = await planQuota(h.store.meta, h.store.root, q, o.now, o.busy);
  const dryRun = o.dryRun || q.dryRun;
  logQuota(o.logger, plan, dryRun, h.store.root);
  if (!dryRun) await applyQuota(h.store.meta, h.store.files, plan);
  return plan;
}

/**
 * One store's periodic upkeep, in the order that frees the most: retention policies, then the cache
 * quota, then garbage collection of the blobs nothing references any more. A dry run changes nothing.
 */
export async function housekeep(h: StoreHousekeeping, o: HousekeepingOptions): Promise<HousekeepingReport> {
  const report: HousekeepingReport = {
    root: h.store.root,
    retention: [],
    retentionApplied: false,
    quotaApplied: false,
  };
  if (h.retention) {
    report.retention = planRetention(h.store.meta, h.retention, o.now);
    const dryRun = o.dryRun || h.retention.dryRun;
    logRetention(o.logger, report.retention, dryRun, h.store.root);
    if (!dryRun) {
      applyRetention(h.store.meta, report.retention);
      report.retentionApplied = true;
    }
  }
  const quota = await enforceQuota(h, o);
  if (quota) {
    report.quota = quota;
    report.quotaApplied = !(o.dryRun || h.cacheQuota!.dryRun);
  }
  if (!o.dryRun) report.gc = await h.store.collectGarbage(o.gcDelayMs);
  return report;
}
