import { join } from "node:path";
import type { Readable } from "node:stream";
import { digestOf, parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { type Descriptor, type ParsedManifest, parseManifest } from "../oci/manifest.ts";
import { MediaType } from "../oci/mediatypes.ts";
import { assertValidName } from "../oci/names.ts";
import { parseReference, type Reference } from "../oci/reference.ts";
import { BlobFiles } from "../store/blob-files.ts";
import { ByteLru } from "../store/byte-lru.ts";
import { collectGarbage, type GcResult } from "../store/gc.ts";
import { type ManifestRow, Metadata, type RepoUsage, type TagGuard } from "../store/metadata.ts";
import { type ProbeResult, probeDatabase, probeWritable } from "../store/probe.ts";
import { Uploads } from "../store/uploads.ts";
import type {
  BlobContent,
  ManifestContent,
  ManifestInfo,
  Page,
  PutManifestResult,
  Registry,
} from "./registry.ts";

/**
 * Recently served manifest bytes by digest. The metadata lookup before it still decides whether the
 * manifest exists in the repository, so a deleted manifest is never served from it.
 */
const manifestCache = new ByteLru(16 * 1024 * 1024);

/** Which repositories the caller may read; auto-mount must not reveal content of others. */
export type CanRead = (repo: string) => boolean;

/** The registry on local disk: blob files plus SQLite metadata. */
export class LocalRegistry implements Registry {
  readonly files: BlobFiles;
  readonly meta: Metadata;
  readonly uploads: Uploads;

  private constructor(
    readonly root: string,
    clock?: () => number,
  ) {
    this.files = new BlobFiles(root);
    this.meta = new Metadata(join(root, "kagami.db"), clock);
    this.uploads = new Uploads(root, this.meta, this.files);
  }

  /** `clock` stamps pushes and pulls (retention and quota tests set it). */
  static async open(root: string, clock?: () => number): Promise<LocalRegistry> {
    const { mkdir } = await import("node:fs/promises");
    await mkdir(root, { recursive: true });
    const reg = new LocalRegistry(root, clock);
    await reg.files.init();
    await reg.uploads.init();
    return reg;
  }

  close(): void {
    this.meta.close();
  }

  /** Readiness: the storage directory takes a write and the metadata database answers. */
  async probe(): Promise<ProbeResult[]> {
    return [await probeWritable(this.root), probeDatabase(join(this.root, "kagami.db"), this.meta.db)];
  }

  /** Bytes and counts per repository (see Metadata.usage). */
  usage(): RepoUsage[] {
    return this.meta.usage();
  }

  /** Removes blobs no manifest references, older than `delayMs` (see store/gc.ts). */
  collectGarbage(delayMs: number): Promise<GcResult> {
    return collectGarbage(this.meta, this.files, delayMs);
  }

  /** A client pulled this manifest: retention and the cache quota go by it (written in batches). */
  notePull(repo: string, digest: string): void {
    this.meta.pulls.note(repo, digest);
  }

  /** A reference that cannot exist (a malformed tag) is simply not found when reading or deleting. */
  private lookupReference(reference: string): Reference | undefined {
    try {
      return parseReference(reference);
    } catch (err) {
      if (err instanceof RegistryError && err.code === "MANIFEST_INVALID") return undefined;
      throw err;
    }
  }

  private resolve(repo: string, reference: string): ManifestRow | undefined {
    assertValidName(repo);
    const ref = this.lookupReference(reference);
    if (!ref) return undefined;
    const digest = ref.kind === "digest" ? ref.digest : this.meta.resolveTag(repo, ref.tag);
    return digest === undefined ? undefined : this.meta.getManifest(repo, digest);
  }

  async headManifest(repo: string, reference: string): Promise<ManifestInfo | undefined> {
    const row = this.resolve(repo, reference);
    return row && { digest: row.digest, mediaType: row.mediaType, size: row.size };
  }

  async getManifest(repo: string, reference: string): Promise<ManifestContent | undefined> {
    const row = this.resolve(repo, reference);
    if (!row) return undefined;
    let bytes = manifestCache.get(row.digest);
    if (!bytes) {
      bytes = await this.files.read(row.digest);
      manifestCache.set(row.digest, bytes);
    }
    return { digest: row.digest, mediaType: row.mediaType, size: row.size, bytes };
  }

  /**
   * Stores a manifest. `mirrored` content came from an upstream that vouches for it: the digest is
   * still verified, but the blobs and children it names may arrive later (pull-through fetches them
   * when they are asked for). `tagGuard` decides, in the transaction that sets the tag, whether the
   * tag may point at this manifest (immutable tags).
   */
  async putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    contentType?: string,
    opts: { mirrored?: boolean; tagGuard?: TagGuard } = {},
  ): Promise<PutManifestResult> {
    assertValidName(repo);
    const ref = parseReference(reference);
    const algorithm = ref.kind === "digest" ? parseDigest(ref.digest).algorithm : "sha256";
    const digest = digestOf(bytes, algorithm);
    if (ref.kind === "digest" && ref.digest !== digest) {
      throw new RegistryError(
        "DIGEST_INVALID",
        `manifest body has digest ${digest}, not ${ref.digest} as the URL says`,
        {
          detail: { expected: ref.digest, actual: digest },
        },
      );
    }
    const parsed = parseManifest(bytes, contentType);
    if (!opts.mirrored) this.checkReferences(repo, parsed);
    await this.files.writeVerified(digest, bytes);
    this.meta.putManifest(
      {
        repo,
        digest,
        mediaType: parsed.mediaType,
        size: bytes.length,
        artifactType: parsed.artifactType ?? null,
        subject: parsed.subject?.digest ?? null,
        annotations: parsed.annotations ?? null,
        refs: [
          ...parsed.blobs.map((b) => ({ digest: b.digest, kind: "blob" as const })),
          ...parsed.manifests.map((m) => ({ digest: m.digest, kind: "manifest" as const })),
        ],
      },
      ref.kind === "tag" ? ref.tag : undefined,
      opts.tagGuard,
      opts.mirrored,
    );
    const result: PutManifestResult = { digest };
    if (parsed.subject) result.subject = parsed.subject.digest;
    return result;
  }

  private checkReferences(repo: string, parsed: ParsedManifest): void {
    for (const blob of parsed.blobs) {
      const size = this.meta.blobInRepo(repo, blob.digest);
      if (size === undefined) {
        throw new RegistryError(
          "MANIFEST_BLOB_UNKNOWN",
          `blob ${blob.digest} (${blob.mediaType}) is not in repository '${repo}'; push it before the manifest`,
          { detail: { digest: blob.digest } },
        );
      }
      if (size !== blob.size) {
        throw new RegistryError(
          "MANIFEST_INVALID",
          `descriptor of ${blob.digest} says size ${blob.size}, but the stored blob has ${size} bytes`,
          { detail: { digest: blob.digest } },
        );
      }
    }
    for (const child of parsed.manifests) {
      if (!this.meta.getManifest(repo, child.digest)) {
        throw new RegistryError(
          "MANIFEST_UNKNOWN",
          `index references manifest ${child.digest}, which is not in repository '${repo}'; push it first`,
          { status: 400, detail: { digest: child.digest } },
        );
      }
    }
  }

  async deleteManifest(repo: string, reference: string): Promise<void> {
    assertValidName(repo);
    const ref = this.lookupReference(reference);
    const found =
      ref !== undefined &&
      (ref.kind === "digest"
        ? this.meta.deleteManifest(repo, ref.digest)
        : this.meta.deleteTag(repo, ref.tag));
    if (!found) {
      throw new RegistryError("MANIFEST_UNKNOWN", `manifest '${reference}' is not in repository '${repo}'`);
    }
  }

  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    assertValidName(repo);
    parseDigest(digest);
    return this.meta.blobInRepo(repo, digest);
  }

  async getBlob(
    repo: string,
    digest: string,
    range?: { start: number; end: number },
  ): Promise<BlobContent | undefined> {
    const size = await this.blobSize(repo, digest);
    if (size === undefined) return undefined;
    return { size, stream: this.files.stream(digest, range) };
  }

  async putBlob(repo: string, digest: string, body: Readable): Promise<void> {
    assertValidName(repo);
    parseDigest(digest);
    const id = await this.uploads.start(repo);
    try {
      await this.uploads.append(repo, id, body);
    } catch (err) {
      await this.uploads.cancel(repo, id).catch(() => {});
      throw err;
    }
    await this.uploads.commit(repo, id, digest);
  }

  async deleteBlob(repo: string, digest: string): Promise<void> {
    assertValidName(repo);
    parseDigest(digest);
    if (!this.meta.unlinkBlob(repo, digest)) {
      throw new RegistryError("BLOB_UNKNOWN", `blob ${digest} is not in repository '${repo}'`);
    }
  }

  /**
   * Links an existing blob into `repo` without a transfer: from `from` when named, else from any
   * repository the caller may read (automatic content discovery). Returns the size, or undefined.
   */
  mount(repo: string, digest: string, from: string | undefined, canRead: CanRead): number | undefined {
    assertValidName(repo);
    parseDigest(digest);
    let size: number | undefined;
    if (from !== undefined) {
      assertValidName(from);
      if (canRead(from)) size = this.meta.blobInRepo(from, digest);
    } else if (this.meta.reposWithBlob(digest).some(canRead)) {
      size = this.meta.blobAnywhere(digest);
    }
    if (size !== undefined) this.meta.linkBlob(repo, digest, size);
    return size;
  }

  /**
   * The Registry interface's mount, for a caller that is not serving a user (the copy engine):
   * content is addressed by a digest it already holds from a verified manifest, so any repository
   * may lend it.
   */
  async mountBlob(repo: string, digest: string, from?: string): Promise<boolean> {
    const all = () => true;
    return (
      (from !== undefined && this.mount(repo, digest, from, all) !== undefined) ||
      this.mount(repo, digest, undefined, all) !== undefined
    );
  }

  async listTags(repo: string, page: Page = {}): Promise<string[]> {
    assertValidName(repo);
    if (!this.meta.repoExists(repo)) {
      throw new RegistryError("NAME_UNKNOWN", `repository '${repo}' is not known to this registry`, {
        detail: { name: repo },
      });
    }
    return this.meta.listTags(repo, page.last ?? "", page.n ?? -1);
  }

  async catalog(page: Page = {}): Promise<string[]> {
    return this.meta.listRepos(page.last ?? "", page.n ?? -1);
  }

  async referrers(repo: string, digest: string, artifactType?: string): Promise<Descriptor[]> {
    assertValidName(repo);
    parseDigest(digest);
    return this.meta
      .referrers(repo, digest)
      .filter((m) => artifactType === undefined || m.artifactType === artifactType)
      .map((m) => {
        const d: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.size };
        if (m.artifactType) d.artifactType = m.artifactType;
        if (m.annotations) d.annotations = m.annotations;
        return d;
      });
  }
}

export const emptyIndexMediaType = MediaType.ociIndex;
