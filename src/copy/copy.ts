import { pipeline, type Readable } from "node:stream";
import { digestOf, isDigest, parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { type Descriptor, type ParsedManifest, parseManifest } from "../oci/manifest.ts";
import type { Registry } from "../registry/registry.ts";
import { UpstreamError } from "../remote/errors.ts";
import { RemoteRegistry } from "../remote/remote.ts";
import {
  backoffDelay,
  describeNetworkError,
  isTransientNetworkError,
  type RetryPolicy,
  sleep,
} from "../remote/retry.ts";
import { Limiter } from "./limit.ts";
import { filterMatches, formatPlatform, type PlatformFilter } from "./platform.ts";
import { BlobVerifyError, VerifyingStream } from "./verify.ts";

/** One end of a copy: a Registry, a repository in it, and a name for messages. */
export interface Endpoint {
  registry: Registry;
  repo: string;
  /** How a person would name this place, e.g. `docker://host/repo:tag`. */
  name?: string;
}

export interface CopySource extends Endpoint {
  /** Tag or digest. */
  reference: string;
}

export interface CopyDestination extends Endpoint {
  /** References (tags) to put the top manifest under; none: by digest only. */
  tags?: string[];
}

export interface Progress {
  blobsTotal: number;
  blobsDone: number;
  bytesTotal: number;
  bytesDone: number;
}

export type CopyEventBody =
  | { type: "plan"; manifests: number; blobs: number; bytes: number }
  | { type: "blob-start"; digest: string; size: number; mediaType: string }
  | { type: "blob-bytes"; digest: string; bytes: number }
  | { type: "blob-done"; digest: string; size: number; how: "copied" | "skipped" | "mounted" }
  | { type: "retry"; what: string; attempt: number; delayMs: number; reason: string }
  | { type: "manifest"; digest: string; mediaType: string; reference: string }
  | { type: "warning"; message: string };

/** What a progress bar and the logs hear: each event with the image and the totals so far. */
export type CopyEvent = CopyEventBody & { image: string; progress: Progress };

export interface CopyOptions {
  /** Which children of an index to copy (default: all). */
  platforms?: PlatformFilter;
  /**
   * When the platform filter leaves one child: false (default) copies that image manifest alone,
   * with its own digest; true writes a one-entry index (a new digest).
   */
  keepIndex?: boolean;
  /** Also copy referrers (OCI referrers API) and cosign `sha256-<hex>.sig/.att/.sbom` tags. */
  referrers?: boolean;
  /** With referrers: false leaves cosign's tag-named signatures out (zot's syncLegacyCosignTags). */
  cosignTags?: boolean;
  /** Blob transfers at once (default 4). */
  concurrency?: number;
  /** A limiter shared with other copies (to the same registry), used instead of `concurrency`. */
  limiter?: Limiter;
  /** Never ask the destination to mount a blob from another repository: always upload. */
  skipMount?: boolean;
  /** Attempts after the first for a blob whose transfer failed in a way that may pass (default 3). */
  retries?: number;
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** How waits grow (default jittered); the mirror passes zot's fixed-or-doubling schedule. */
  retryBackoff?: RetryPolicy["backoff"];
  onEvent?: (event: CopyEvent) => void;
}

export interface CopyResult {
  /** Digest of what the destination now holds under its tags. */
  digest: string;
  mediaType: string;
  size: number;
  /** The source's top digest; differs from `digest` when a platform filter rewrote the index. */
  sourceDigest: string;
  /** Set when the index had to be rewritten (filtered copy): the digest is not the source's. */
  digestChanged: boolean;
  /** Platforms copied, for an index. */
  platforms: string[];
  manifests: number;
  blobs: { copied: number; skipped: number; mounted: number };
  bytesCopied: number;
  referrers: number;
  warnings: string[];
}

/** A copy that failed: names the image and the cause. */
export class CopyError extends Error {
  constructor(
    message: string,
    override readonly cause: unknown,
  ) {
    super(message);
    this.name = "CopyError";
  }
}

interface ManifestNode {
  digest: string;
  mediaType: string;
  size: number;
  bytes: Buffer;
  parsed: ParsedManifest;
  children: ManifestNode[];
  /** Already complete at the destination: nothing below it needs copying. */
  present: boolean;
}

const cosignSuffixes = [".sig", ".att", ".sbom"];

/** Copies one image tree (index, manifests, configs, layers, optionally referrers) between Registries. */
export async function copyImage(
  src: CopySource,
  dst: CopyDestination,
  opts: CopyOptions = {},
): Promise<CopyResult> {
  const run = new CopyRun(src, dst, opts);
  return run.run();
}

function describe(e: Endpoint, reference?: string): string {
  if (e.name) return e.name;
  const r = e.registry instanceof RemoteRegistry ? e.registry.name : e.registry.constructor.name;
  return `${r}/${e.repo}${reference ? (reference.includes(":") ? `@${reference}` : `:${reference}`) : ""}`;
}

function isRetryable(err: unknown): boolean {
  if (err instanceof BlobVerifyError) return true;
  // The HTTP client already spent its retries on this one.
  if (err instanceof UpstreamError && err.retried) return false;
  const r = (err as { retryable?: unknown })?.retryable;
  if (typeof r === "boolean") return r;
  if (err instanceof RegistryError) return err.status >= 500 || err.status === 429 || err.status === 408;
  return isTransientNetworkError(err);
}

function errorText(err: unknown): string {
  if (err instanceof RegistryError || err instanceof BlobVerifyError) return err.message;
  return describeNetworkError(err);
}

class CopyRun {
  private readonly image: string;
  private readonly progress: Progress = { blobsTotal: 0, blobsDone: 0, bytesTotal: 0, bytesDone: 0 };
  private readonly limiter: Limiter;
  private readonly blobJobs = new Map<string, Promise<void>>();
  private readonly result: CopyResult = {
    digest: "",
    mediaType: "",
    size: 0,
    sourceDigest: "",
    digestChanged: false,
    platforms: [],
    manifests: 0,
    blobs: { copied: 0, skipped: 0, mounted: 0 },
    bytesCopied: 0,
    referrers: 0,
    warnings: [],
  };
  private readonly retries: number;
  private readonly seenReferrers = new Set<string>();
  private readonly mountFrom: string | undefined;

  constructor(
    private readonly src: CopySource,
    private readonly dst: CopyDestination,
    private readonly opts: CopyOptions,
  ) {
    this.image = describe(src, src.reference);
    this.limiter = opts.limiter ?? new Limiter(opts.concurrency ?? 4);
    this.retries = opts.retries ?? 3;
    const same =
      src.registry === dst.registry ||
      (src.registry instanceof RemoteRegistry &&
        dst.registry instanceof RemoteRegistry &&
        src.registry.name === dst.registry.name);
    this.mountFrom = same && src.repo !== dst.repo ? src.repo : undefined;
  }

  private emit(event: CopyEventBody): void {
    this.opts.onEvent?.({ ...event, image: this.image, progress: { ...this.progress } } as CopyEvent);
  }

  private warn(message: string): void {
    this.result.warnings.push(message);
    this.emit({ type: "warning", message });
  }

  private fail(what: string, err: unknown): never {
    if (err instanceof CopyError) throw err;
    throw new CopyError(
      `copying ${this.image} to ${describe(this.dst, this.dst.tags?.[0])} failed: ${what}: ${errorText(err)}`,
      err,
    );
  }

  async run(): Promise<CopyResult> {
    const { src, dst } = this;
    let top: ManifestNode;
    try {
      top = await this.fetchTree(src.reference, undefined, this.opts.platforms ?? { kind: "all" }, true);
    } catch (err) {
      this.fail("reading the source", err);
    }
    this.result.sourceDigest = top.digest;

    const filtered = this.applyFilter(top);
    const nodes = flatten(filtered);
    const blobs = new Map<string, Descriptor>();
    for (const n of nodes) {
      if (n.present) continue;
      for (const b of n.parsed.blobs) if (!blobs.has(b.digest)) blobs.set(b.digest, b);
    }
    this.progress.blobsTotal = blobs.size;
    this.progress.bytesTotal = [...blobs.values()].reduce((s, b) => s + b.size, 0);
    this.emit({ type: "plan", manifests: nodes.length, blobs: blobs.size, bytes: this.progress.bytesTotal });

    await this.copyBlobs([...blobs.values()]);
    await this.putTree(filtered, dst.tags?.length ? dst.tags : [filtered.digest]);

    this.result.digest = filtered.digest;
    this.result.mediaType = filtered.mediaType;
    this.result.size = filtered.size;
    this.result.digestChanged = filtered.digest !== top.digest;
    this.result.manifests = nodes.length;

    if (this.opts.referrers) {
      const subjects = flatten(filtered).map((n) => n.digest);
      if (this.result.digestChanged) {
        subjects.push(top.digest);
        this.warn(
          `the index was filtered, so its digest changed (${top.digest} → ${filtered.digest}); referrers of the original index still name ${top.digest}`,
        );
      }
      for (const d of subjects) await this.copyReferrers(d, 0);
    }
    return this.result;
  }

  /** Reads a manifest and everything below it, verifying each digest and size. */
  private async fetchTree(
    reference: string,
    desc: Descriptor | undefined,
    filter: PlatformFilter,
    isTop: boolean,
  ): Promise<ManifestNode> {
    const m = await this.retrying(`manifest ${reference}`, () =>
      this.src.registry.getManifest(this.src.repo, reference),
    );
    if (!m) {
      throw new RegistryError("MANIFEST_UNKNOWN", `manifest ${reference} is not in ${describe(this.src)}`);
    }
    const byDigest = isDigest(reference);
    const algorithm = byDigest ? parseDigest(reference).algorithm : "sha256";
    const digest = digestOf(m.bytes, algorithm);
    if (byDigest && digest !== reference) {
      throw new BlobVerifyError(`manifest ${reference} has digest ${digest}`, reference);
    }
    if (desc && desc.size !== m.bytes.length) {
      throw new BlobVerifyError(
        `manifest ${desc.digest} is ${m.bytes.length} bytes, not ${desc.size}`,
        desc.digest,
      );
    }
    const parsed = parseManifest(m.bytes, m.mediaType);
    const node: ManifestNode = {
      digest,
      mediaType: parsed.mediaType,
      size: m.bytes.length,
      bytes: m.bytes,
      parsed,
      children: [],
      present: false,
    };
    if (parsed.kind === "index") {
      const wanted = isTop
        ? parsed.manifests.filter((c) => filterMatches(filter, c.platform))
        : parsed.manifests;
      if (wanted.length === 0) {
        const have = parsed.manifests.map((c) => formatPlatform(c.platform)).join(", ");
        throw new RegistryError(
          "MANIFEST_UNKNOWN",
          `no manifest in the index matches the platforms asked for (it has ${have || "none"})`,
        );
      }
      node.children = await Promise.all(
        wanted.map((c) => this.fetchTree(c.digest, c, { kind: "all" }, false)),
      );
      if (isTop) this.result.platforms = wanted.map((c) => formatPlatform(c.platform));
    } else if (!isTop) {
      // A child manifest the destination already has is complete there (registries check that).
      const have = await this.dst.registry.headManifest(this.dst.repo, digest).catch(() => undefined);
      node.present = have !== undefined && have.digest === digest;
    }
    return node;
  }

  /** Applies a platform filter's consequence at the top: one child alone, or a rewritten index. */
  private applyFilter(top: ManifestNode): ManifestNode {
    if (top.parsed.kind !== "index") return top;
    const filter = this.opts.platforms ?? { kind: "all" };
    if (filter.kind === "all" || top.children.length === top.parsed.manifests.length) return top;
    if (top.children.length === 1 && !this.opts.keepIndex) return top.children[0]!;
    const bytes = filteredIndex(
      top.bytes,
      top.children.map((c) => c.digest),
    );
    const digest = digestOf(bytes);
    this.warn(
      `only ${this.result.platforms.join(", ")} of the index were copied: the copied index has a new digest ${digest} (source ${top.digest})`,
    );
    return { ...top, bytes, digest, size: bytes.length, parsed: parseManifest(bytes, top.mediaType) };
  }

  private async copyBlobs(blobs: Descriptor[]): Promise<void> {
    const failures: unknown[] = [];
    await Promise.all(
      blobs.map((b) =>
        this.copyBlob(b).catch((err: unknown) => {
          failures.push(err);
        }),
      ),
    );
    if (failures.length) throw failures[0];
  }

  private copyBlob(b: Descriptor): Promise<void> {
    let job = this.blobJobs.get(b.digest);
    if (!job) {
      job = this.limiter.run(() => this.transferBlob(b));
      this.blobJobs.set(b.digest, job);
    }
    return job;
  }

  private async transferBlob(b: Descriptor): Promise<void> {
    const { dst } = this;
    const what = `blob ${b.digest} (${b.mediaType}, ${b.size} bytes)`;
    let how: "copied" | "skipped" | "mounted" = "copied";
    try {
      const have = await dst.registry.blobSize(dst.repo, b.digest);
      if (have === b.size) how = "skipped";
      else if (
        !this.opts.skipMount &&
        dst.registry.mountBlob &&
        (await dst.registry.mountBlob(dst.repo, b.digest, this.mountFrom).catch(() => false))
      ) {
        how = "mounted";
      }
    } catch (err) {
      this.fail(`checking ${what} at the destination`, err);
    }
    if (how === "copied") {
      this.emit({ type: "blob-start", digest: b.digest, size: b.size, mediaType: b.mediaType });
      await this.retrying(what, async () => {
        let sent = 0;
        try {
          await this.streamBlob(b, (n) => {
            sent += n;
            this.progress.bytesDone += n;
            this.emit({ type: "blob-bytes", digest: b.digest, bytes: n });
          });
        } catch (err) {
          this.progress.bytesDone -= sent;
          throw err;
        }
      });
      this.result.bytesCopied += b.size;
    } else {
      this.progress.bytesDone += b.size;
    }
    this.result.blobs[how]++;
    this.progress.blobsDone++;
    this.emit({ type: "blob-done", digest: b.digest, size: b.size, how });
  }

  /** One attempt at moving a blob: source stream → verifier → destination. */
  private async streamBlob(b: Descriptor, onBytes: (n: number) => void): Promise<void> {
    const { src, dst } = this;
    const content = await src.registry.getBlob(src.repo, b.digest);
    if (!content) throw new RegistryError("BLOB_UNKNOWN", "the source does not have it");
    if (content.size >= 0 && content.size !== b.size) {
      content.stream.destroy();
      throw new BlobVerifyError(
        `the source serves ${content.size} bytes, the descriptor says ${b.size}`,
        b.digest,
      );
    }
    const verifier = new VerifyingStream(b.digest, b.size, onBytes);
    const body: Readable = pipeline(content.stream, verifier, () => {});
    try {
      await dst.registry.putBlob(dst.repo, b.digest, body, b.size);
    } finally {
      if (!body.destroyed && !body.readableEnded) body.destroy();
    }
    // A destination that already had it may return without reading: ask it.
    if (verifier.bytes !== b.size && (await dst.registry.blobSize(dst.repo, b.digest)) !== b.size) {
      throw new BlobVerifyError(`only ${verifier.bytes} of ${b.size} bytes were sent`, b.digest);
    }
  }

  /** Writes manifests bottom-up: children by digest, then the top under each reference. */
  private async putTree(node: ManifestNode, references: string[]): Promise<void> {
    for (const c of node.children) {
      if (!c.present || c.children.length) await this.putTree(c, [c.digest]);
    }
    for (const ref of references) {
      await this.retrying(`manifest ${node.digest} as ${ref}`, async () => {
        await this.dst.registry.putManifest(this.dst.repo, ref, node.bytes, node.mediaType);
      });
      this.emit({ type: "manifest", digest: node.digest, mediaType: node.mediaType, reference: ref });
    }
  }

  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= this.retries || !isRetryable(err)) this.fail(what, err);
        const delay = backoffDelay(
          {
            retryDelay: this.opts.retryDelayMs ?? 500,
            maxRetryDelay: this.opts.maxRetryDelayMs ?? 10_000,
            backoff: this.opts.retryBackoff ?? "jittered",
          },
          attempt,
        );
        this.emit({ type: "retry", what, attempt: attempt + 1, delayMs: delay, reason: errorText(err) });
        await sleep(delay);
      }
    }
  }

  /** Copies what refers to `subject`: referrers API entries and cosign's tag-named signatures. */
  private async copyReferrers(subject: string, depth: number): Promise<void> {
    if (depth > 4 || this.seenReferrers.has(subject)) return;
    this.seenReferrers.add(subject);
    const { src } = this;
    let found: { reference: string; tag?: string }[] = [];
    try {
      const refs = await src.registry.referrers(src.repo, subject);
      found = refs.map((r) => ({ reference: r.digest }));
    } catch (err) {
      this.warn(`could not list referrers of ${subject}: ${errorText(err)}`);
    }
    const { algorithm, hex } = parseDigest(subject);
    for (const suffix of this.opts.cosignTags === false ? [] : cosignSuffixes) {
      const tag = `${algorithm}-${hex}${suffix}`;
      const have = await src.registry.headManifest(src.repo, tag).catch(() => undefined);
      if (have) found.push({ reference: tag, tag });
    }
    for (const r of found) {
      const sub = new CopyRun(
        { ...src, reference: r.reference },
        { ...this.dst, tags: r.tag ? [r.tag] : [] },
        {
          ...this.opts,
          platforms: { kind: "all" },
          referrers: false,
          onEvent: (e) => {
            if (e.type === "warning" || e.type === "retry" || e.type === "manifest") {
              this.opts.onEvent?.({ ...e, image: this.image, progress: { ...this.progress } });
            }
          },
        },
      );
      const res = await sub.run();
      this.result.referrers++;
      this.result.blobs.copied += res.blobs.copied;
      this.result.blobs.skipped += res.blobs.skipped;
      this.result.blobs.mounted += res.blobs.mounted;
      this.result.bytesCopied += res.bytesCopied;
      await this.copyReferrers(res.digest, depth + 1);
    }
  }
}

/** The index a platform filter writes: the source's document with only the kept children. */
export function filteredIndex(source: Buffer, keepDigests: string[]): Buffer {
  const doc = JSON.parse(source.toString("utf8")) as Record<string, unknown> & { manifests: Descriptor[] };
  const keep = new Set(keepDigests);
  doc.manifests = doc.manifests.filter((d) => keep.has(d.digest));
  return Buffer.from(JSON.stringify(doc));
}

function flatten(node: ManifestNode): ManifestNode[] {
  return [node, ...node.children.flatMap(flatten)];
}
