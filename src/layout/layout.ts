import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { digestOf, isDigest, parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { type Descriptor, parseManifest } from "../oci/manifest.ts";
import { isManifestType, MediaType } from "../oci/mediatypes.ts";
import type {
  BlobContent,
  ManifestContent,
  ManifestInfo,
  Page,
  PutManifestResult,
  Registry,
} from "../registry/registry.ts";
import { syncDir, syncFile } from "../store/fsutil.ts";

/** The annotation that names a tag in an OCI layout's index.json. */
export const refNameAnnotation = "org.opencontainers.image.ref.name";

export interface LayoutIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export function blobRelPath(digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `blobs/${algorithm}/${hex}`;
}

export const notWritable = (what: string) =>
  new RegistryError("UNSUPPORTED", `${what} is read-only`, { status: 405 });

/**
 * What OCI layouts and oci-archives share: index.json names tags (`ref.name` annotations), blobs are
 * files by digest. The `repo` argument is how an image is named: a reference is looked up as the
 * ref.name itself, then as `repo:reference` (the form podman and `kagami export` write), and a tag
 * written with a repo is named `repo:tag`, so that cosign's `sha256-<hex>.sig` tags keep saying
 * which repository they belong to.
 */
export abstract class LayoutBase implements Registry {
  protected abstract readIndex(): Promise<LayoutIndex>;
  protected abstract statBlob(digest: string): Promise<number | undefined>;
  protected abstract openBlob(digest: string, range?: { start: number; end: number }): Readable;
  abstract readonly description: string;

  /** The index.json entry for a reference, if any. */
  async findRef(repo: string, reference: string): Promise<Descriptor | undefined> {
    const index = await this.readIndex();
    if (reference === "") {
      const untaggedOrAll = index.manifests.filter((m) => isManifestType(m.mediaType));
      return untaggedOrAll.length === 1 ? untaggedOrAll[0] : undefined;
    }
    const names = [reference];
    if (repo) names.push(`${repo}:${reference}`);
    for (const name of names) {
      const found = index.manifests.filter((m) => m.annotations?.[refNameAnnotation] === name);
      if (found.length) return found[found.length - 1];
    }
    return undefined;
  }

  /** Every ref.name in index.json with its descriptor. */
  async refs(): Promise<{ name: string; descriptor: Descriptor }[]> {
    const index = await this.readIndex();
    return index.manifests
      .filter((m) => m.annotations?.[refNameAnnotation] !== undefined)
      .map((m) => ({ name: m.annotations![refNameAnnotation]!, descriptor: m }));
  }

  /**
   * Untagged images in index.json (skopeo writes `oci-archive:FILE` without a name this way);
   * referrers, which are untagged too, are not images of their own.
   */
  async unnamedImages(): Promise<Descriptor[]> {
    const out: Descriptor[] = [];
    for (const m of (await this.readIndex()).manifests) {
      if (m.annotations?.[refNameAnnotation] !== undefined || !isManifestType(m.mediaType)) continue;
      const content = await this.getManifest("", m.digest);
      if (content && !parseManifest(content.bytes, content.mediaType).subject) out.push(m);
    }
    return out;
  }

  private async resolve(repo: string, reference: string): Promise<Descriptor | undefined> {
    if (isDigest(reference)) {
      const size = await this.statBlob(reference);
      if (size === undefined) return undefined;
      const index = await this.readIndex();
      const known = index.manifests.find((m) => m.digest === reference);
      return { mediaType: known?.mediaType ?? "", digest: reference, size };
    }
    return this.findRef(repo, reference);
  }

  async headManifest(repo: string, reference: string): Promise<ManifestInfo | undefined> {
    const m = await this.getManifest(repo, reference);
    return m && { digest: m.digest, mediaType: m.mediaType, size: m.size };
  }

  async getManifest(repo: string, reference: string): Promise<ManifestContent | undefined> {
    const desc = await this.resolve(repo, reference);
    if (!desc) return undefined;
    const size = await this.statBlob(desc.digest);
    if (size === undefined) {
      throw new RegistryError(
        "MANIFEST_UNKNOWN",
        `${this.description}: index.json names ${desc.digest}, but its blob is missing`,
      );
    }
    const chunks: Buffer[] = [];
    for await (const c of this.openBlob(desc.digest)) chunks.push(c as Buffer);
    const bytes = Buffer.concat(chunks);
    const actual = digestOf(bytes, parseDigest(desc.digest).algorithm);
    if (actual !== desc.digest) {
      throw new RegistryError(
        "DIGEST_INVALID",
        `${this.description}: blob ${desc.digest} has content ${actual}`,
      );
    }
    const mediaType = parseManifest(
      bytes,
      isManifestType(desc.mediaType) ? desc.mediaType : undefined,
    ).mediaType;
    return { digest: desc.digest, mediaType, size: bytes.length, bytes };
  }

  async blobSize(_repo: string, digest: string): Promise<number | undefined> {
    parseDigest(digest);
    return this.statBlob(digest);
  }

  async getBlob(
    _repo: string,
    digest: string,
    range?: { start: number; end: number },
  ): Promise<BlobContent | undefined> {
    const size = await this.statBlob(digest);
    if (size === undefined) return undefined;
    return { size: range ? range.end - range.start + 1 : size, stream: this.openBlob(digest, range) };
  }

  async listTags(repo: string, _page?: Page): Promise<string[]> {
    const names = (await this.refs()).map((r) => r.name);
    if (!repo) return names;
    const prefix = `${repo}:`;
    const scoped = names.filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length));
    return scoped.length ? scoped : names.filter((n) => !n.includes(":") && !n.includes("/"));
  }

  async catalog(_page?: Page): Promise<string[]> {
    const repos = new Set<string>();
    for (const { name } of await this.refs()) {
      const colon = name.lastIndexOf(":");
      if (colon > 0 && colon > name.lastIndexOf("/")) repos.add(name.slice(0, colon));
    }
    return [...repos].sort();
  }

  /** Manifests in index.json whose subject is `digest` (where oras and kagami put referrers). */
  async referrers(_repo: string, digest: string, artifactType?: string): Promise<Descriptor[]> {
    const out: Descriptor[] = [];
    const index = await this.readIndex();
    for (const m of index.manifests) {
      if (!isManifestType(m.mediaType) || m.digest === digest) continue;
      const content = await this.getManifest("", m.digest).catch(() => undefined);
      if (!content) continue;
      const parsed = parseManifest(content.bytes, content.mediaType);
      if (parsed.subject?.digest !== digest) continue;
      if (artifactType !== undefined && parsed.artifactType !== artifactType) continue;
      const d: Descriptor = { mediaType: content.mediaType, digest: m.digest, size: content.size };
      if (parsed.artifactType) d.artifactType = parsed.artifactType;
      if (parsed.annotations) d.annotations = parsed.annotations;
      if (!out.some((x) => x.digest === d.digest)) out.push(d);
    }
    return out;
  }

  async putManifest(
    _repo: string,
    _reference: string,
    _bytes: Buffer,
    _contentType?: string,
  ): Promise<PutManifestResult> {
    throw notWritable(this.description);
  }

  async putBlob(_repo: string, _digest: string, body: Readable, _size?: number): Promise<void> {
    body.destroy();
    throw notWritable(this.description);
  }
}

/** An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), read and written. */
export class OciLayout extends LayoutBase {
  readonly description: string;
  private index: LayoutIndex | undefined;
  private indexLock: Promise<void> = Promise.resolve();

  protected constructor(
    readonly dir: string,
    description?: string,
  ) {
    super();
    this.description = description ?? `OCI layout ${dir}`;
  }

  /** Opens a layout; with `create`, makes the directory and its `oci-layout` file when missing. */
  static async open(dir: string, opts: { create?: boolean } = {}): Promise<OciLayout> {
    const layout = new OciLayout(dir);
    let marker: string | undefined;
    try {
      marker = await readFile(join(dir, "oci-layout"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (marker === undefined) {
      if (!opts.create) {
        throw new RegistryError("NAME_UNKNOWN", `${dir} is not an OCI image layout (no oci-layout file)`);
      }
      await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
      await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    } else {
      let version: unknown;
      try {
        version = (JSON.parse(marker) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
      } catch {
        version = undefined;
      }
      if (typeof version !== "string" || !version.startsWith("1.")) {
        throw new RegistryError(
          "UNSUPPORTED",
          `${dir}/oci-layout: unsupported imageLayoutVersion ${String(version)}`,
        );
      }
    }
    return layout;
  }

  private blobPath(digest: string): string {
    return join(this.dir, blobRelPath(digest));
  }

  protected async readIndex(): Promise<LayoutIndex> {
    if (this.index) return this.index;
    let text: string;
    try {
      text = await readFile(join(this.dir, "index.json"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
    }
    const doc = JSON.parse(text) as LayoutIndex;
    if (!Array.isArray(doc.manifests)) {
      throw new RegistryError("MANIFEST_INVALID", `${this.dir}/index.json has no manifests array`);
    }
    this.index = doc;
    return doc;
  }

  protected async statBlob(digest: string): Promise<number | undefined> {
    try {
      return (await stat(this.blobPath(digest))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  protected openBlob(digest: string, range?: { start: number; end: number }): Readable {
    return createReadStream(this.blobPath(digest), range ? { start: range.start, end: range.end } : {});
  }

  /** Changes index.json under a lock and writes it atomically. */
  private updateIndex(change: (index: LayoutIndex) => void): Promise<void> {
    const run = this.indexLock.then(async () => {
      const index = await this.readIndex();
      change(index);
      const tmp = join(this.dir, `.index-${randomUUID()}.json`);
      await writeFile(tmp, JSON.stringify(index));
      await syncFile(tmp);
      await rename(tmp, join(this.dir, "index.json"));
      this.index = index;
    });
    this.indexLock = run.catch(() => {});
    return run;
  }

  override async putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    contentType?: string,
  ): Promise<PutManifestResult> {
    const parsed = parseManifest(bytes, contentType);
    const byDigest = isDigest(reference);
    const digest = digestOf(bytes, byDigest ? parseDigest(reference).algorithm : "sha256");
    if (byDigest && digest !== reference) {
      throw new RegistryError("DIGEST_INVALID", `manifest has digest ${digest}, not ${reference}`);
    }
    await this.writeBlob(digest, bytes);
    const desc: Descriptor = { mediaType: parsed.mediaType, digest, size: bytes.length };
    if (parsed.artifactType && parsed.subject) desc.artifactType = parsed.artifactType;
    if (!byDigest) {
      const name = repo ? `${repo}:${reference}` : reference;
      await this.updateIndex((index) => {
        index.manifests = index.manifests.filter((m) => m.annotations?.[refNameAnnotation] !== name);
        index.manifests.push({ ...desc, annotations: { [refNameAnnotation]: name } });
      });
    } else if (parsed.subject) {
      // Referrers are kept reachable from index.json, untagged, as oras does.
      await this.updateIndex((index) => {
        if (!index.manifests.some((m) => m.digest === digest)) index.manifests.push(desc);
      });
    }
    const result: PutManifestResult = { digest };
    if (parsed.subject) result.subject = parsed.subject.digest;
    return result;
  }

  /** Adds an untagged entry for `desc` to index.json (what skopeo does for `oci:DIR` without a reference). */
  async addUntagged(desc: Descriptor): Promise<void> {
    await this.updateIndex((index) => {
      if (!index.manifests.some((m) => m.digest === desc.digest && !m.annotations?.[refNameAnnotation])) {
        index.manifests.push(desc);
      }
    });
  }

  private async writeBlob(digest: string, bytes: Buffer): Promise<void> {
    if ((await this.statBlob(digest)) !== undefined) return;
    const dest = this.blobPath(digest);
    await mkdir(dirname(dest), { recursive: true });
    const tmp = join(dirname(dest), `.tmp-${randomUUID()}`);
    await writeFile(tmp, bytes);
    await syncFile(tmp);
    await rename(tmp, dest);
  }

  /** Writes a blob through a temp file, verifying digest (and size) before it takes its name. */
  override async putBlob(_repo: string, digest: string, body: Readable, size?: number): Promise<void> {
    const { algorithm } = parseDigest(digest);
    if ((await this.statBlob(digest)) !== undefined) {
      body.destroy();
      return;
    }
    const dest = this.blobPath(digest);
    await mkdir(dirname(dest), { recursive: true });
    const tmp = join(dirname(dest), `.tmp-${randomUUID()}`);
    const hash = createHash(algorithm);
    let n = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        n += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, counter, createWriteStream(tmp));
      const actual = `${algorithm}:${hash.digest("hex")}`;
      if (actual !== digest) {
        throw new RegistryError("DIGEST_INVALID", `content has digest ${actual}, not ${digest}`, {
          detail: { expected: digest, actual },
        });
      }
      if (size !== undefined && n !== size) {
        throw new RegistryError("SIZE_INVALID", `blob ${digest} has ${n} bytes, not ${size}`);
      }
      await syncFile(tmp);
      await rename(tmp, dest);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }

  /** fsyncs the blob directories and index.json's directory (call once at the end of a copy). */
  async sync(): Promise<void> {
    await syncDir(join(this.dir, "blobs", "sha256")).catch(() => {});
    await syncDir(this.dir);
  }

  /** Every blob file in the layout, for packing into an archive. */
  async blobFiles(): Promise<{ path: string; name: string; size: number }[]> {
    const { readdir } = await import("node:fs/promises");
    const out: { path: string; name: string; size: number }[] = [];
    const blobsDir = join(this.dir, "blobs");
    for (const alg of await readdir(blobsDir).catch(() => [] as string[])) {
      for (const hex of await readdir(join(blobsDir, alg))) {
        if (hex.startsWith(".")) continue;
        const p = join(blobsDir, alg, hex);
        out.push({ path: p, name: `blobs/${alg}/${hex}`, size: (await stat(p)).size });
      }
    }
    return out;
  }
}
