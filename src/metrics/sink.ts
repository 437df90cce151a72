/**
 * What the mirror, the sync scheduler and the upstream client report for metrics. The layers below
 * the server call this small interface and never see prom-client; the server hands them an
 * implementation (prometheus.ts), and tools and tests that want none get `noMetrics`.
 */

export type CacheKind = "manifest" | "blob";

/** What a manifestCheckInterval re-check of a cached tag found upstream. */
export type FreshnessResult = "unchanged" | "changed" | "gone" | "failed";

export interface UpstreamExchange {
  /** host[:port] of the upstream that answered. */
  host: string;
  method: string;
  /** HTTP status, or 0 when no answer came (network failure, timeout). */
  status: number;
  /** Until the response headers arrived. */
  seconds: number;
  /** Body bytes announced by Content-Length (0 when unknown). */
  bytes: number;
}

export interface MirrorMetrics {
  /** A client asked a mirrored repository for content: served from the store (hit) or fetched (miss). */
  cacheLookup(kind: CacheKind, hit: boolean): void;
  /** A request joined a fetch of the same content already under way instead of starting one. */
  singleFlightJoin(kind: CacheKind): void;
  /** An upstream was not asked because it failed or lacked the reference a moment ago. */
  negativeCacheHit(): void;
  freshnessCheck(result: FreshnessResult): void;
  syncRun(registry: string, ok: boolean): void;
  upstreamExchange(e: UpstreamExchange): void;
}

export const noMetrics: MirrorMetrics = {
  cacheLookup() {},
  singleFlightJoin() {},
  negativeCacheHit() {},
  freshnessCheck() {},
  syncRun() {},
  upstreamExchange() {},
};
