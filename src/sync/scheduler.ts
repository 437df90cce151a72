import cron, { type ScheduledTask } from "node-cron";
import type { Logger } from "pino";
import { type CopyEvent, copyImage } from "../copy/copy.ts";
import { parseManifest } from "../oci/manifest.ts";
import type { Stores } from "../registry/stores.ts";
import type { RemoteRegistry } from "../remote/remote.ts";
import { accessorySubject, filterTags } from "./filters.ts";
import type { Mirror } from "./mirror.ts";
import { contentFor, localName } from "./routing.ts";
import type { SyncRunRecord } from "./state.ts";

export interface SyncRunOptions {
  dryRun?: boolean;
  onEvent?: (e: CopyEvent) => void;
  /** Called with each image decision, for a CLI's summary. */
  onImage?: (info: {
    upstream: string;
    local: string;
    tag: string;
    action: "copied" | "unchanged" | "would copy" | "skipped unsigned" | "failed";
    error?: string;
  }) => void;
}

export interface SyncRunSummary extends SyncRunRecord {
  durationMs: number;
  dryRun: boolean;
}

const repoConcurrency = 3;
const hasGlob = (s: string) => /[*?[{]/.test(s);
const trim = (s: string) => s.replace(/^\/+|\/+$/g, "");

/**
 * Periodic sync: every pollInterval (or on a cron schedule) each registry's content is listed
 * upstream, filtered, compared by digest, and what changed is copied. A run never overlaps itself.
 */
export class SyncScheduler {
  private readonly timers: (NodeJS.Timeout | ScheduledTask)[] = [];
  private readonly running = new Map<number, Promise<SyncRunSummary>>();
  private stopped = false;

  constructor(
    readonly mirror: Mirror,
    private readonly stores: Stores,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.mirror.config.registries.forEach((r, i) => {
      if (r.content.length === 0) return;
      const tick = () => {
        if (this.stopped) return;
        this.run(i).catch((err: unknown) =>
          this.logger.error({ err, upstream: r.urls[0] }, "sync run failed"),
        );
      };
      if (r.schedule) {
        this.timers.push(cron.schedule(r.schedule, tick));
      } else if (r.pollIntervalMs && r.pollIntervalMs > 0) {
        const first = setTimeout(tick, 1000);
        first.unref();
        const t = setInterval(tick, r.pollIntervalMs);
        t.unref();
        this.timers.push(first, t);
      }
    });
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) {
      if ("stop" in t && typeof t.stop === "function") void t.stop();
      else clearInterval(t as NodeJS.Timeout);
    }
    this.timers.length = 0;
  }

  isRunning(index: number): boolean {
    return this.running.has(index);
  }

  /** One pass over registry `index`; joins the pass under way instead of starting a second. */
  run(index: number, opts: SyncRunOptions = {}): Promise<SyncRunSummary> {
    const busy = this.running.get(index);
    if (busy) return busy;
    const p = this.pass(index, opts).finally(() => this.running.delete(index));
    this.running.set(index, p);
    return p;
  }

  private async upstreamRepos(upstream: RemoteRegistry, index: number): Promise<string[]> {
    const registry = this.mirror.config.registries[index]!;
    const repos = new Set<string>();
    let catalog: string[] | undefined;
    for (const c of registry.content) {
      const prefix = trim(c.prefix);
      if (!hasGlob(prefix)) {
        // An exact name needs no catalog: this is how Docker Hub and GHCR, which have none, are polled.
        repos.add(prefix);
        continue;
      }
      catalog ??= await upstream.catalog();
      for (const r of catalog) if (contentFor(r, registry) === c) repos.add(r);
    }
    return [...repos].sort();
  }

  private async pass(index: number, opts: SyncRunOptions): Promise<SyncRunSummary> {
    const upstream = this.mirror.upstream(index);
    const started = Date.now();
    const summary: SyncRunSummary = {
      registry: upstream.name,
      startedAt: started,
      finishedAt: started,
      repos: 0,
      tagsChecked: 0,
      copied: 0,
      bytes: 0,
      errors: [],
      durationMs: 0,
      dryRun: opts.dryRun ?? false,
    };
    this.logger.info({ upstream: upstream.name, dryRun: summary.dryRun }, "sync run started");
    let repos: string[] = [];
    try {
      repos = await this.upstreamRepos(upstream, index);
    } catch (err) {
      summary.errors.push(`listing repositories at ${upstream.name}: ${(err as Error).message}`);
    }
    summary.repos = repos.length;
    const queue = [...repos];
    const worker = async () => {
      for (let repo = queue.shift(); repo !== undefined; repo = queue.shift()) {
        try {
          await this.syncRepo(index, upstream, repo, summary, opts);
        } catch (err) {
          summary.errors.push(`${repo}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(repoConcurrency, queue.length) }, worker));
    summary.finishedAt = Date.now();
    summary.durationMs = summary.finishedAt - started;
    if (!summary.dryRun) {
      this.mirror.state.recordRun(summary);
      this.mirror.metrics.syncRun(upstream.name, summary.errors.length === 0);
    }
    this.logger.info(
      {
        upstream: upstream.name,
        repos: summary.repos,
        tagsChecked: summary.tagsChecked,
        copied: summary.copied,
        bytes: summary.bytes,
        errors: summary.errors.length,
        durationMs: summary.durationMs,
      },
      "sync run finished",
    );
    return summary;
  }

  private async syncRepo(
    index: number,
    upstream: RemoteRegistry,
    repo: string,
    summary: SyncRunSummary,
    opts: SyncRunOptions,
  ): Promise<void> {
    const registry = this.mirror.config.registries[index]!;
    const content = contentFor(repo, registry);
    if (!content) return;
    const local = localName(repo, content);
    const listed = await upstream.listTags(repo);
    // Signature, attestation and SBOM tags are copied with the image they name (copyImage's
    // referrers), as zot does, whatever the tag filters say; on their own they are not images to sync.
    const tags = filterTags(
      listed.filter((t) => accessorySubject(t) === undefined),
      content,
    );
    for (const tag of tags) {
      summary.tagsChecked++;
      try {
        const head = await upstream.headManifest(repo, tag);
        if (!head) continue;
        const have = await this.stores
          .for(local)
          .headManifest(local, tag)
          .catch(() => undefined);
        if (
          have?.digest === head.digest &&
          (await this.complete(local, head.digest)) &&
          (await this.accessoriesCurrent(
            upstream,
            repo,
            local,
            head.digest,
            registry.syncLegacyCosignTags === false ? [] : listed,
          ))
        ) {
          this.mirror.state.checked(local, tag, head.digest, upstream.name);
          opts.onImage?.({ upstream: repo, local, tag, action: "unchanged" });
          continue;
        }
        if (registry.onlySigned && !(await this.mirror.isSigned(upstream, repo, head.digest))) {
          opts.onImage?.({ upstream: repo, local, tag, action: "skipped unsigned" });
          continue;
        }
        if (opts.dryRun) {
          opts.onImage?.({ upstream: repo, local, tag, action: "would copy" });
          continue;
        }
        const copyOpts: Parameters<typeof copyImage>[2] = {
          referrers: true,
          cosignTags: registry.syncLegacyCosignTags !== false,
          retries: registry.maxRetries,
          retryDelayMs: registry.retryDelayMs,
          maxRetryDelayMs: registry.maxRetryDelayMs,
          retryBackoff: "doubling",
        };
        if (opts.onEvent) copyOpts.onEvent = opts.onEvent;
        // What was pushed here before the copy stays local (see markMirrored).
        const pushedHere = this.stores.for(local).meta.localManifests(local);
        const result = await copyImage(
          { registry: upstream, repo, reference: head.digest, name: `${upstream.name}/${repo}:${tag}` },
          { registry: this.stores.for(local), repo: local, tags: [tag] },
          copyOpts,
        );
        this.stores.for(local).meta.markMirrored(local, result.digest, pushedHere);
        summary.copied++;
        summary.bytes += result.bytesCopied;
        this.mirror.state.checked(local, tag, result.digest, upstream.name);
        opts.onImage?.({ upstream: repo, local, tag, action: "copied" });
      } catch (err) {
        summary.errors.push(`${repo}:${tag}: ${(err as Error).message}`);
        opts.onImage?.({ upstream: repo, local, tag, action: "failed", error: (err as Error).message });
      }
    }
  }

  /**
   * Whether the image's cosign tags and referrers upstream are all here: a signature added upstream
   * after the image was copied is copied on the next run, as zot does.
   */
  private async accessoriesCurrent(
    upstream: RemoteRegistry,
    repo: string,
    local: string,
    digest: string,
    listed: string[],
  ): Promise<boolean> {
    const store = this.stores.for(local);
    for (const tag of listed) {
      if (accessorySubject(tag) !== digest) continue;
      const theirs = await upstream.headManifest(repo, tag);
      const ours = await store.headManifest(local, tag).catch(() => undefined);
      if (theirs && theirs.digest !== ours?.digest) return false;
    }
    for (const r of await upstream.referrers(repo, digest).catch(() => []))
      if (!(await store.headManifest(local, r.digest).catch(() => undefined))) return false;
    return true;
  }

  /** A tag pulled on demand may still lack blobs; a periodic sync completes it. */
  private async complete(repo: string, digest: string): Promise<boolean> {
    const m = await this.stores.for(repo).getManifest(repo, digest);
    if (!m) return false;
    const parsed = parseManifest(m.bytes, m.mediaType);
    for (const b of parsed.blobs)
      if (this.stores.for(repo).meta.blobInRepo(repo, b.digest) === undefined) return false;
    for (const c of parsed.manifests) if (!(await this.complete(repo, c.digest))) return false;
    return true;
  }
}
