import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { CacheKind, FreshnessResult, MirrorMetrics, UpstreamExchange } from "./sink.ts";

/** What the HTTP API serves, as the request metrics label it: the route, never the repository or digest. */
export type EndpointKind = "manifest" | "blob" | "upload" | "tags" | "catalog" | "referrers" | "other";

export interface RepoUsageRow {
  repo: string;
  bytes: number;
  blobs: number;
  manifests: number;
  tags: number;
}

export interface PrometheusOptions {
  /** Per-repository usage of every store; asked at a scrape when it may have changed. */
  usage: () => RepoUsageRow[];
  /** Repositories labelled one by one, largest first; the rest are summed as `_other`. */
  repositoryLimit?: number;
  /** Usage is recounted at a scrape at least this often even when nothing said it changed (GC, retention). */
  usageMaxAgeMs?: number;
  /** Whether content is arriving now (mirror fetches under way): usage is recounted at every scrape until it settles. */
  busy?: () => boolean;
  version?: string;
}

/** The label every repository past the limit is summed under; `_` cannot start a repository name. */
export const otherRepositories = "_other";

const httpBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const upstreamBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Kagami's metrics in a registry of its own (not prom-client's global one, so several servers can
 * run in one process). Label values are bounded: endpoint kinds, methods, status codes, upstream
 * hosts and sync registries from the config; repositories only on the storage gauges, capped.
 */
export class PrometheusMetrics implements MirrorMetrics {
  readonly registry = new Registry();
  private usageDirty = true;
  private usageAt = 0;
  private wasBusy = false;
  private usageCostMs = 0;

  private readonly requests: Counter<"kind" | "method" | "status">;
  private readonly duration: Histogram<"kind" | "method" | "status">;
  private readonly bytesIn: Counter<"kind">;
  private readonly bytesOut: Counter<"kind">;
  private readonly cache: Counter<"kind" | "result">;
  private readonly joins: Counter<"kind">;
  private readonly negative: Counter;
  private readonly freshness: Counter<"result">;
  private readonly syncRuns: Counter<"registry" | "outcome">;
  private readonly upstreamRequests: Counter<"upstream" | "method" | "status">;
  private readonly upstreamDuration: Histogram<"upstream" | "method">;
  private readonly upstreamBytes: Counter<"upstream">;

  constructor(private readonly opts: PrometheusOptions) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "kagami_build_info",
      help: "Always 1; the version label says which Kagami is running.",
      labelNames: ["version"],
      registers,
    }).set({ version: opts.version ?? "unknown" }, 1);
    this.requests = new Counter({
      name: "kagami_http_requests_total",
      help: "HTTP requests answered, by endpoint kind, method and status.",
      labelNames: ["kind", "method", "status"],
      registers,
    });
    this.duration = new Histogram({
      name: "kagami_http_request_duration_seconds",
      help: "Time from a request's arrival until its response was finished (or the client went away).",
      labelNames: ["kind", "method", "status"],
      buckets: httpBuckets,
      registers,
    });
    this.bytesIn = new Counter({
      name: "kagami_http_request_bytes_total",
      help: "Request body bytes received (Content-Length, or the bytes read for a chunked body).",
      labelNames: ["kind"],
      registers,
    });
    this.bytesOut = new Counter({
      name: "kagami_http_response_bytes_total",
      help: "Response body bytes of responses that were sent to the end.",
      labelNames: ["kind"],
      registers,
    });
    this.cache = new Counter({
      name: "kagami_mirror_cache_requests_total",
      help: "Requests for mirrored content: result=hit served from the store, miss fetched from upstream.",
      labelNames: ["kind", "result"],
      registers,
    });
    this.joins = new Counter({
      name: "kagami_mirror_singleflight_joins_total",
      help: "Requests that joined an upstream fetch of the same content already under way.",
      labelNames: ["kind"],
      registers,
    });
    this.negative = new Counter({
      name: "kagami_mirror_negative_cache_hits_total",
      help: "Upstream lookups skipped because the upstream lacked the reference or failed within negativeCacheTTL.",
      registers,
    });
    this.freshness = new Counter({
      name: "kagami_mirror_freshness_checks_total",
      help: "Re-checks of cached tags upstream (manifestCheckInterval), by what they found.",
      labelNames: ["result"],
      registers,
    });
    this.syncRuns = new Counter({
      name: "kagami_sync_runs_total",
      help: "Periodic sync runs finished, per upstream registry; outcome=failure when any image or listing failed.",
      labelNames: ["registry", "outcome"],
      registers,
    });
    this.upstreamRequests = new Counter({
      name: "kagami_upstream_requests_total",
      help: "HTTP exchanges with upstream registries, each attempt counted; status=error when no answer came.",
      labelNames: ["upstream", "method", "status"],
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: "kagami_upstream_request_duration_seconds",
      help: "Time until an upstream's response headers arrived.",
      labelNames: ["upstream", "method"],
      buckets: upstreamBuckets,
      registers,
    });
    this.upstreamBytes = new Counter({
      name: "kagami_upstream_response_bytes_total",
      help: "Response body bytes announced by upstreams (Content-Length).",
      labelNames: ["upstream"],
      registers,
    });
    this.storageGauges(registers);
  }

  private storageGauges(registers: Registry[]): void {
    const self = this;
    const perRepo: Gauge<"repository">[] = [];
    // Registered first: a registry collects in order, so the recount here is what the gauges below show.
    new Gauge({
      name: "kagami_storage_repositories",
      help: "Repositories holding content, in all stores.",
      registers,
      collect() {
        self.refreshUsage(this, perRepo);
      },
    });
    const gauge = (name: string, help: string) =>
      perRepo.push(new Gauge({ name, help, labelNames: ["repository"], registers }));
    gauge(
      "kagami_storage_bytes",
      "Bytes of blobs and manifests per repository (shared blobs count in each).",
    );
    gauge("kagami_storage_blobs", "Blobs linked into each repository.");
    gauge("kagami_storage_manifests", "Manifests stored per repository.");
    gauge("kagami_storage_tags", "Tags per repository.");
  }

  /** Recounts usage when something changed or the last count is old; cheap aggregate queries otherwise never run. */
  private refreshUsage(total: Gauge, [bytes, blobs, manifests, tags]: Gauge<"repository">[]): void {
    const now = Date.now();
    const busy = this.opts.busy?.() ?? false;
    // Fetches that finished since the last recount stored content too: one more recount after they settle.
    const settling = busy || this.wasBusy;
    const age = now - this.usageAt;
    if (!this.usageDirty && !settling && age < (this.opts.usageMaxAgeMs ?? 60_000)) return;
    // The queries block the event loop: on a store large enough for them to take a while, a scrape
    // soon after the last recount shows that one, so recounting takes at most ~2% of the time.
    if (age < 50 * this.usageCostMs) return;
    this.usageDirty = false;
    this.wasBusy = busy;
    const started = performance.now();
    const rows = this.opts.usage().sort((a, b) => b.bytes - a.bytes || (a.repo < b.repo ? -1 : 1));
    this.usageCostMs = performance.now() - started;
    this.usageAt = Date.now();
    const limit = this.opts.repositoryLimit ?? 200;
    for (const g of [bytes, blobs, manifests, tags]) g!.reset();
    total.set(rows.length);
    const other = { bytes: 0, blobs: 0, manifests: 0, tags: 0 };
    rows.forEach((r, i) => {
      if (i < limit) {
        bytes!.set({ repository: r.repo }, r.bytes);
        blobs!.set({ repository: r.repo }, r.blobs);
        manifests!.set({ repository: r.repo }, r.manifests);
        tags!.set({ repository: r.repo }, r.tags);
        return;
      }
      other.bytes += r.bytes;
      other.blobs += r.blobs;
      other.manifests += r.manifests;
      other.tags += r.tags;
    });
    if (rows.length > limit) {
      bytes!.set({ repository: otherRepositories }, other.bytes);
      blobs!.set({ repository: otherRepositories }, other.blobs);
      manifests!.set({ repository: otherRepositories }, other.manifests);
      tags!.set({ repository: otherRepositories }, other.tags);
    }
  }

  /** Storage content may have changed (a push, a delete, a mirrored fetch): the next scrape recounts. */
  storageChanged(): void {
    this.usageDirty = true;
  }

  request(r: {
    kind: EndpointKind;
    method: string;
    status: number;
    seconds: number;
    bytesIn: number;
    bytesOut: number;
  }): void {
    const labels = { kind: r.kind, method: r.method, status: String(r.status) };
    this.requests.inc(labels);
    this.duration.observe(labels, r.seconds);
    if (r.bytesIn > 0) this.bytesIn.inc({ kind: r.kind }, r.bytesIn);
    if (r.bytesOut > 0) this.bytesOut.inc({ kind: r.kind }, r.bytesOut);
  }

  cacheLookup(kind: CacheKind, hit: boolean): void {
    this.cache.inc({ kind, result: hit ? "hit" : "miss" });
    if (!hit) this.storageChanged();
  }

  singleFlightJoin(kind: CacheKind): void {
    this.joins.inc({ kind });
  }

  negativeCacheHit(): void {
    this.negative.inc();
  }

  freshnessCheck(result: FreshnessResult): void {
    this.freshness.inc({ result });
    if (result === "changed") this.storageChanged();
  }

  syncRun(registry: string, ok: boolean): void {
    this.syncRuns.inc({ registry, outcome: ok ? "success" : "failure" });
    this.storageChanged();
  }

  upstreamExchange(e: UpstreamExchange): void {
    const status = e.status === 0 ? "error" : String(e.status);
    this.upstreamRequests.inc({ upstream: e.host, method: e.method, status });
    this.upstreamDuration.observe({ upstream: e.host, method: e.method }, e.seconds);
    if (e.bytes > 0) this.upstreamBytes.inc({ upstream: e.host }, e.bytes);
  }

  /** The text exposition format, for GET /metrics. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
