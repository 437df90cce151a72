import { existsSync } from "node:fs";
import type { Logger } from "pino";
import type { SyncConfig, SyncRegistryConfig } from "../config/config.ts";
import { type MirrorMetrics, noMetrics } from "../metrics/sink.ts";
import { isDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { parseManifest } from "../oci/manifest.ts";
import { isValidTag } from "../oci/names.ts";
import type { LocalRegistry } from "../registry/local.ts";
import type { BlobContent, ManifestContent } from "../registry/registry.ts";
import type { Stores } from "../registry/stores.ts";
import { type CredentialLookup, loadOptionalZotCredentials } from "../remote/credentials.ts";
import { RemoteRegistry } from "../remote/remote.ts";
import { accessorySubject, describeFilters, tagAllowed, tagRefusal } from "./filters.ts";
import { BlobFetcher } from "./inflight.ts";
import { aliasesOf, pullsFromHost, routesForLocal, type UpstreamRoute } from "./routing.ts";
import { SyncState } from "./state.ts";

/** Artifact types that mean "a signature" for onlySigned. */
const signatureTypes = new Set([
  "application/vnd.dev.cosign.artifact.sig.v1+json",
  "application/vnd.cncf.notary.signature",
  "application/vnd.dev.sigstore.bundle.v0.3+json",
]);

export interface UpstreamHealth {
  url: string;
  ok: boolean;
  lastSuccess?: string;
  lastFailure?: string;
  lastError?: string;
}

export interface MirroredBlob {
  size: number;
  /** Where its bytes are: the staging file while the fetch runs, then the blob store. */
  paths: string[];
  /** How far the file may be read (verified bytes only), and a wait for more. */
  growing: {
    available(): number;
    next(): Promise<void>;
    failure(): Error | undefined;
  };
}

interface Negative {
  until: number;
  error?: RegistryError;
}

const prefetchConcurrency = 3;

/** zot's default syncTimeout: no upstream request outlives it. */
const defaultSyncTimeoutMs = 3 * 3_600_000;

/**
 * Pull-through: answers what the local store lacks from the upstreams of `extensions.sync`,
 * keeping digests exactly as upstream has them. Manifests are answered as soon as they are
 * fetched and verified; blobs stream to the client while they are written and verified.
 */
export class Mirror {
  readonly state: SyncState;
  private readonly fetchers = new Map<LocalRegistry, BlobFetcher>();
  private readonly upstreams = new Map<number, RemoteRegistry>();
  private readonly health = new Map<number, UpstreamHealth>();
  private readonly manifestFlights = new Map<string, Promise<void>>();
  private readonly negative = new Map<string, Negative>();
  private readonly aliasCache = new Map<string, string[]>();
  private readonly referrerChecks = new Map<string, { at: number; list: Descriptor[] }>();
  private credentials: CredentialLookup | undefined;
  private prefetchRunning = 0;
  private readonly prefetchQueue: (() => Promise<void>)[] = [];

  constructor(
    readonly config: SyncConfig,
    private readonly stores: Stores,
    private readonly logger: Logger,
    readonly metrics: MirrorMetrics = noMetrics,
  ) {
    this.state = new SyncState(stores.root.meta.db);
    if (config.credentialsFile) {
      const { store, missing } = loadOptionalZotCredentials(config.credentialsFile);
      if (missing) {
        logger.warn(
          { file: config.credentialsFile },
          `sync: credentials file ${config.credentialsFile} does not exist; upstreams are accessed anonymously`,
        );
      } else this.credentials = store.lookup;
    }
    config.registries.forEach((r, i) => {
      this.health.set(i, { url: r.urls.join(", "), ok: true });
      if (r.certDir && !existsSync(r.certDir)) {
        logger.warn(
          { dir: r.certDir },
          `sync: certificate directory ${r.certDir} does not exist; the system's CAs are used for ${r.urls[0]}`,
        );
      }
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.upstreams.values()].map((u) => u.close().catch(() => {})));
    this.upstreams.clear();
  }

  /** Blob fetches are shared per store: a digest is one file in one store. */
  private fetcher(localRepo: string): BlobFetcher {
    const store = this.stores.for(localRepo);
    let f = this.fetchers.get(store);
    if (!f) {
      f = new BlobFetcher(store, this.logger);
      this.fetchers.set(store, f);
    }
    return f;
  }

  /** Upstream blob fetches under way. */
  get activeFetches(): number {
    let n = 0;
    for (const f of this.fetchers.values()) n += f.active;
    return n;
  }

  /** Whether a blob of `store` is coming from an upstream now: the cache quota leaves its image alone. */
  isFetching(store: LocalRegistry, digest: string): boolean {
    return this.fetchers.get(store)?.has(digest) ?? false;
  }

  upstream(index: number): RemoteRegistry {
    let u = this.upstreams.get(index);
    if (!u) {
      const r = this.config.registries[index]!;
      const opts: ConstructorParameters<typeof RemoteRegistry>[0] = {
        urls: r.urls,
        tlsVerify: r.tlsVerify,
        maxRetries: r.maxRetries,
        retryDelay: r.retryDelayMs,
        maxRetryDelay: r.maxRetryDelayMs,
        retryBackoff: "doubling",
        requestTimeout: r.syncTimeoutMs ?? defaultSyncTimeoutMs,
        userAgent: "kagami-mirror",
        plainHttpAdvice: (host) =>
          `if it is meant to, write the URL as http://${host} in extensions.sync.registries[${index}].urls (tlsVerify: false only turns off certificate checks)`,
      };
      if (r.reqConcurrent !== undefined) opts.maxConcurrentRequests = r.reqConcurrent;
      if (r.reqPerSec !== undefined) opts.requestsPerSecond = r.reqPerSec;
      if (r.maxIdleConnsPerHost !== undefined) opts.maxIdleConnections = r.maxIdleConnsPerHost;
      if (r.certDir) opts.certDir = r.certDir;
      if (this.credentials) opts.credentials = this.credentials;
      opts.onExchange = (e) => this.metrics.upstreamExchange(e);
      u = new RemoteRegistry(opts);
      this.upstreams.set(index, u);
    }
    return u;
  }

  private routes(localRepo: string): UpstreamRoute[] {
    return routesForLocal(this.config.registries, localRepo);
  }

  /**
   * Every local name that reaches the same upstream content as `localRepo` (access is checked on
   * each). Asked on every request; the answer depends only on this mirror's configuration, which a
   * reload replaces with a new Mirror, so it is kept per name.
   */
  aliases(localRepo: string): string[] {
    let names = this.aliasCache.get(localRepo);
    if (!names) {
      if (this.aliasCache.size >= 10_000) this.aliasCache.clear();
      names = aliasesOf(this.config.registries, localRepo);
      this.aliasCache.set(localRepo, names);
    }
    return names;
  }

  /** Whether containerd's `ns=host` requests may reach an upstream here. */
  pullsFrom(host: string): boolean {
    return pullsFromHost(this.config.registries, host);
  }

  isMirrored(localRepo: string): boolean {
    return this.routes(localRepo).length > 0;
  }

  private ok(index: number): void {
    const h = this.health.get(index)!;
    h.ok = true;
    h.lastSuccess = new Date().toISOString();
  }

  private failed(index: number, err: unknown): void {
    const h = this.health.get(index)!;
    h.ok = false;
    h.lastFailure = new Date().toISOString();
    h.lastError = (err as Error).message;
  }

  healthReport(): UpstreamHealth[] {
    return [...this.health.values()];
  }

  /**
   * Makes sure the local store can answer a manifest request: fetches a missing manifest, and
   * re-checks a cached tag upstream once it is older than manifestCheckInterval. When upstream
   * fails, cached content is left to be served (stale if need be); a miss gets an error that names
   * the upstream and its failure.
   */
  async ensureManifest(localRepo: string, reference: string): Promise<void> {
    const routes = this.routes(localRepo);
    if (routes.length === 0) return;
    const byDigest = isDigest(reference);
    if (!byDigest && !isValidTag(reference)) return;
    const key = `${localRepo}|${reference}`;
    const running = this.manifestFlights.get(key);
    if (running) {
      this.metrics.singleFlightJoin("manifest");
      return running;
    }
    const flight = this.refresh(localRepo, reference, byDigest, routes).finally(() =>
      this.manifestFlights.delete(key),
    );
    this.manifestFlights.set(key, flight);
    return flight;
  }

  private async refresh(localRepo: string, reference: string, byDigest: boolean, routes: UpstreamRoute[]) {
    const cached = await this.stores.for(localRepo).headManifest(localRepo, reference);
    // Each lookup counts once: a hit when the cached manifest is what gets served, else a miss.
    let counted = false;
    const lookup = (hit: boolean) => {
      if (!counted) this.metrics.cacheLookup("manifest", hit);
      counted = true;
    };
    if (byDigest) {
      if (cached) return lookup(true);
    } else if (cached) {
      const seen = this.state.tag(localRepo, reference);
      // A tag pushed here, not fetched, is local content: never overwritten from upstream.
      if (!seen) return;
      const interval = this.config.registries[routes[0]!.index]?.manifestCheckIntervalMs ?? 0;
      if (Date.now() - seen.checkedAt < interval) return lookup(true);
    }
    if (!cached) lookup(false);
    // A content rule's tag filter is final: a tag it refuses is not looked for at a later upstream,
    // which would serve another registry's image under this name.
    const accessory = byDigest ? false : await this.isAccessoryOfPresent(localRepo, reference);
    const refusedAt = byDigest || accessory ? -1 : routes.findIndex((r) => !tagAllowed(reference, r.content));
    const allowed = refusedAt < 0 ? routes : routes.slice(0, refusedAt);
    const filtered = refusedAt < 0 ? "" : this.filterRefusal(reference, routes[refusedAt]!);
    if (allowed.length === 0) {
      if (cached) return lookup(true);
      throw new RegistryError(
        "MANIFEST_UNKNOWN",
        `tag '${reference}' of '${localRepo}' is not mirrored: ${filtered}`,
        {
          detail: { name: localRepo, reference },
        },
      );
    }
    const failures: string[] = [];
    let notFoundAt: string[] = [];
    for (const route of allowed) {
      const upstream = this.upstream(route.index);
      const where = `${upstream.name} (as '${route.upstreamRepo}')`;
      const negKey = `${route.index}|${route.upstreamRepo}|${reference}`;
      const neg = this.negative.get(negKey);
      if (neg && neg.until > Date.now()) {
        this.metrics.negativeCacheHit();
        if (neg.error) failures.push(`${where}: ${neg.error.message} (remembered)`);
        else notFoundAt.push(where);
        continue;
      }
      let checking = false;
      try {
        if (cached && !byDigest) {
          checking = true;
          const head = await upstream.headManifest(route.upstreamRepo, reference);
          checking = false;
          this.ok(route.index);
          this.metrics.freshnessCheck(
            !head ? "gone" : head.digest === cached.digest ? "unchanged" : "changed",
          );
          lookup(head === undefined || head.digest === cached.digest);
          if (head && head.digest === cached.digest) {
            this.state.checked(localRepo, reference, head.digest, upstream.name);
            return;
          }
          if (!head) {
            // Gone upstream: keep serving what we have, as a cache should, and look again later.
            this.state.checked(localRepo, reference, cached.digest, upstream.name);
            this.logger.warn(
              { repo: localRepo, tag: reference, upstream: upstream.name },
              "tag no longer exists upstream; serving the cached one",
            );
            return;
          }
        }
        const m = await upstream.getManifest(route.upstreamRepo, reference);
        this.ok(route.index);
        if (!m) {
          notFoundAt.push(where);
          this.remember(negKey, route);
          continue;
        }
        if (
          route.registry.onlySigned &&
          !accessory &&
          !(byDigest && (await this.refersToPresent(localRepo, m)))
        )
          await this.requireSignature(upstream, route, m);
        await this.store(localRepo, reference, m, route, upstream.name);
        return;
      } catch (err) {
        if (
          err instanceof RegistryError &&
          err.code === "DENIED" &&
          err.status === 403 &&
          route.registry.onlySigned
        ) {
          throw err;
        }
        if (checking) this.metrics.freshnessCheck("failed");
        this.failed(route.index, err);
        const e =
          err instanceof RegistryError ? err : new RegistryError("MANIFEST_UNKNOWN", (err as Error).message);
        failures.push(`${where}: ${e.message}`);
        this.remember(negKey, route, e);
      }
    }
    if (cached) {
      lookup(true);
      this.logger.warn(
        { repo: localRepo, reference, failures },
        "upstream check failed; serving the cached manifest, possibly stale",
      );
      return;
    }
    if (failures.length > 0) {
      throw new RegistryError(
        "MANIFEST_UNKNOWN",
        `manifest '${reference}' of '${localRepo}' is not cached here, and the upstream failed: ${failures.join("; ")}`,
        { status: 502, detail: { name: localRepo, reference } },
      );
    }
    notFoundAt = [...new Set(notFoundAt)];
    throw new RegistryError(
      "MANIFEST_UNKNOWN",
      `manifest '${reference}' of '${localRepo}' is neither cached here nor at ${notFoundAt.join(", ")}${filtered ? `, and not looked for further: ${filtered}` : ""}`,
      { detail: { name: localRepo, reference } },
    );
  }

  /** Why a route's content rule refuses a tag, naming the upstream and the rule. */
  private filterRefusal(tag: string, route: UpstreamRoute): string {
    const rule = route.content ? ` (content prefix '${route.content.prefix}')` : "";
    return `${this.upstream(route.index).name}${rule} lets through only ${describeFilters(route.content)}, and ${tagRefusal(tag, route.content)}`;
  }

  /**
   * Whether a tag is a cosign signature, attestation or SBOM tag (or a referrers-schema tag) of an
   * image this repository holds or can mirror. Such tags go with their image: the tag filters were
   * written for image tags and would cut `cosign verify` off from the signature, and zot checks no
   * signature of a signature. The image itself is fetched by its digest first (as any digest
   * reference: the filters do not apply to digests, onlySigned does), so an arbitrary `sha256-…`
   * tag does not get past the filters.
   */
  private async isAccessoryOfPresent(localRepo: string, tag: string): Promise<boolean> {
    const subject = accessorySubject(tag);
    if (!subject) return false;
    const store = this.stores.for(localRepo);
    if ((await store.headManifest(localRepo, subject)) !== undefined) return true;
    await this.ensureManifest(localRepo, subject).catch((err: unknown) => {
      // The tag is then judged as any tag is; the log keeps why its image could not be had.
      this.logger.debug(
        { repo: localRepo, tag, err: (err as Error).message },
        "image of an accessory tag not fetched",
      );
    });
    return (await store.headManifest(localRepo, subject)) !== undefined;
  }

  /**
   * A referrer fetched by digest (as the referrers API hands them out) whose subject this repository
   * holds is that image's signature or attestation, not an image to require a signature of. A tag
   * gets no such pass: any manifest can carry a `subject`.
   */
  private async refersToPresent(localRepo: string, m: ManifestContent): Promise<boolean> {
    const subject = parseManifest(m.bytes, m.mediaType).subject?.digest;
    if (!subject) return false;
    return (await this.stores.for(localRepo).headManifest(localRepo, subject)) !== undefined;
  }

  private remember(key: string, route: UpstreamRoute, error?: RegistryError): void {
    const ttl = route.registry.negativeCacheTtlMs;
    if (ttl <= 0) return;
    this.negative.set(key, error ? { until: Date.now() + ttl, error } : { until: Date.now() + ttl });
    if (this.negative.size > 10_000) {
      const now = Date.now();
      for (const [k, v] of this.negative) if (v.until <= now) this.negative.delete(k);
    }
  }

  /** Whether upstream has a cosign signature tag or a signature referrer for the manifest. */
  async isSigned(upstream: RemoteRegistry, repo: string, digest: string): Promise<boolean> {
    const cosignTag = `${digest.replace(":", "-")}.sig`;
    if (await upstream.headManifest(repo, cosignTag).catch(() => undefined)) return true;
    const refs = await upstream.referrers(repo, digest).catch(() => [] as Descriptor[]);
    return refs.some((r) => r.artifactType !== undefined && signatureTypes.has(r.artifactType));
  }

  private async requireSignature(
    upstream: RemoteRegistry,
    route: UpstreamRoute,
    m: ManifestContent,
  ): Promise<void> {
    if (await this.isSigned(upstream, route.upstreamRepo, m.digest)) return;
    throw new RegistryError(
      "DENIED",
      `upstream image ${route.upstreamRepo}@${m.digest} at ${upstream.name} is not signed (no cosign signature, no signature referrer), and onlySigned is set for this upstream`,
      { status: 403 },
    );
  }

  private async store(
    localRepo: string,
    reference: string,
    m: ManifestContent,
    route: UpstreamRoute,
    upstreamName: string,
  ): Promise<void> {
    await this.stores
      .for(localRepo)
      .putManifest(localRepo, reference, m.bytes, m.mediaType, { mirrored: true });
    if (!isDigest(reference)) this.state.checked(localRepo, reference, m.digest, upstreamName);
    this.logger.info(
      { repo: localRepo, reference, digest: m.digest, upstream: upstreamName },
      "mirrored manifest",
    );
    // Fill the cache behind the client: the image's blobs come down once, shared with any client asking.
    const parsed = parseManifest(m.bytes, m.mediaType);
    for (const b of parsed.blobs) {
      if (this.stores.for(localRepo).meta.blobInRepo(localRepo, b.digest) === undefined) {
        this.schedule(() => this.prefetch(localRepo, b.digest, route));
      }
    }
  }

  private schedule(task: () => Promise<void>): void {
    this.prefetchQueue.push(task);
    this.drain();
  }

  private drain(): void {
    while (this.prefetchRunning < prefetchConcurrency && this.prefetchQueue.length > 0) {
      const task = this.prefetchQueue.shift()!;
      this.prefetchRunning++;
      void task().finally(() => {
        this.prefetchRunning--;
        this.drain();
      });
    }
  }

  private async prefetch(localRepo: string, digest: string, route: UpstreamRoute): Promise<void> {
    if (this.stores.for(localRepo).meta.blobInRepo(localRepo, digest) !== undefined) return;
    if (this.claim(localRepo, digest) !== "fetch") return;
    const flight = this.fetcher(localRepo).fetch(localRepo, digest, () =>
      this.upstream(route.index).getBlob(route.upstreamRepo, digest),
    );
    await flight.finished.catch(() => {});
  }

  /**
   * Whether `localRepo` may have the blob at all: only what its own mirrored manifests reference is
   * fetched for it. When another repository already holds the verified bytes, they are linked here
   * without asking upstream. Anything else never reaches the upstream: a digest asked for under an
   * unrelated (say, public) name must neither join a private fetch nor cost an upstream request.
   */
  private claim(localRepo: string, digest: string): "linked" | "fetch" | "no" {
    const store = this.stores.for(localRepo);
    if (!store.meta.isReferenced(localRepo, digest)) return "no";
    const size = store.meta.blobAnywhere(digest);
    if (size === undefined) return "fetch";
    store.meta.linkBlob(localRepo, digest, size);
    return "linked";
  }

  /**
   * A blob the local store lacks, streamed from the upstream fetch (started, or joined); "linked"
   * when the store had the bytes and they are now visible in `localRepo`.
   */
  async blob(localRepo: string, digest: string): Promise<MirroredBlob | "linked" | undefined> {
    const routes = this.routes(localRepo);
    if (routes.length === 0) return undefined;
    const claim = this.claim(localRepo, digest);
    if (claim !== "no") this.metrics.cacheLookup("blob", claim === "linked");
    if (claim !== "fetch") return claim === "linked" ? "linked" : undefined;
    const fetcher = this.fetcher(localRepo);
    if (fetcher.has(digest)) this.metrics.singleFlightJoin("blob");
    const flight = fetcher.fetch(localRepo, digest, () => this.openBlob(routes, digest));
    let found: boolean;
    try {
      found = await flight.ready;
    } catch (err) {
      throw this.blobError(localRepo, digest, err);
    }
    if (!found) return undefined;
    return {
      size: flight.size,
      paths: [flight.stagingPath, flight.finalPath],
      growing: {
        available: () => flight.available(),
        next: () => new Promise<void>((r) => flight.once("progress", () => r())),
        failure: () => flight.error,
      },
    };
  }

  /** Total size of a blob the local store lacks, or undefined. Uses the in-flight fetch when there is one. */
  async blobSize(localRepo: string, digest: string): Promise<number | undefined> {
    const routes = this.routes(localRepo);
    if (routes.length === 0) return undefined;
    const claim = this.claim(localRepo, digest);
    if (claim === "no") return undefined;
    this.metrics.cacheLookup("blob", claim === "linked");
    if (claim === "linked") return this.stores.for(localRepo).meta.blobInRepo(localRepo, digest);
    const failures: string[] = [];
    for (const route of routes) {
      try {
        const size = await this.upstream(route.index).blobSize(route.upstreamRepo, digest);
        this.ok(route.index);
        if (size !== undefined) return size;
      } catch (err) {
        this.failed(route.index, err);
        failures.push(`${this.upstream(route.index).name}: ${(err as Error).message}`);
      }
    }
    if (failures.length > 0) throw this.blobError(localRepo, digest, new Error(failures.join("; ")));
    return undefined;
  }

  private async openBlob(routes: UpstreamRoute[], digest: string): Promise<BlobContent | undefined> {
    const failures: string[] = [];
    for (const route of routes) {
      try {
        const b = await this.upstream(route.index).getBlob(route.upstreamRepo, digest);
        this.ok(route.index);
        if (b) return b;
      } catch (err) {
        this.failed(route.index, err);
        failures.push(`${this.upstream(route.index).name}: ${(err as Error).message}`);
      }
    }
    if (failures.length > 0) throw new Error(failures.join("; "));
    return undefined;
  }

  private blobError(localRepo: string, digest: string, err: unknown): RegistryError {
    return new RegistryError(
      "BLOB_UNKNOWN",
      `blob ${digest} of '${localRepo}' is not cached here, and the upstream failed: ${(err as Error).message}`,
      { status: 502, detail: { name: localRepo, digest } },
    );
  }

  /**
   * Referrers of a subject as upstream lists them (checked at most once per manifestCheckInterval),
   * merged with the local ones; the referring manifests are fetched into the store behind the answer.
   */
  async referrers(localRepo: string, digest: string): Promise<Descriptor[]> {
    const routes = this.routes(localRepo);
    if (routes.length === 0) return [];
    const key = `${localRepo}|${digest}`;
    const interval = routes[0]!.registry.manifestCheckIntervalMs;
    const seen = this.referrerChecks.get(key);
    if (seen && Date.now() - seen.at < interval) return seen.list;
    for (const route of routes) {
      try {
        const list = await this.upstream(route.index).referrers(route.upstreamRepo, digest);
        this.ok(route.index);
        this.referrerChecks.set(key, { at: Date.now(), list });
        for (const d of list) {
          this.schedule(() => this.ensureManifest(localRepo, d.digest).catch(() => {}));
        }
        return list;
      } catch (err) {
        this.failed(route.index, err);
      }
    }
    return seen?.list ?? [];
  }

  /**
   * The upstream (its first URL) that serves a repository on demand and has not allowed local
   * writes into it, if any: a local push would pin its tags, a delete would drop its content.
   */
  writeProtectingUpstream(localRepo: string): string | undefined {
    return this.routes(localRepo).find((r) => !r.registry.allowLocalWrites)?.registry.urls[0];
  }
}

export type { SyncRegistryConfig };
