import type { Readable } from "node:stream";
import { digestOf, isDigest, parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { MediaType } from "../oci/mediatypes.ts";
import type {
  BlobContent,
  ManifestContent,
  ManifestInfo,
  PutManifestResult,
  Registry,
} from "../registry/registry.ts";
import { notWritable } from "./layout.ts";
import { type TarEntry, TarFile } from "./tar-file.ts";

const dockerConfigType = "application/vnd.docker.container.image.v1+json";
/** What the layers of `docker save` are: plain tars, not the gzip skopeo's label claims. */
export const dockerUncompressedLayerType = "application/vnd.docker.image.rootfs.diff.tar";

/** One image of a docker-archive, as Kagami serves it. */
export interface DockerArchiveImage {
  /** manifest.json's RepoTags, as written (`docker.io/team/app:1`, `alpine:latest`); may be empty. */
  repoTags: string[];
  digest: string;
  manifest: Buffer;
}

interface ManifestItem {
  Config?: unknown;
  RepoTags?: unknown;
  Layers?: unknown;
}

function invalid(file: string, why: string): RegistryError {
  return new RegistryError("MANIFEST_INVALID", `${file} is not a usable docker-archive: ${why}`);
}

/**
 * A `docker save` tar (manifest.json, the config JSON, uncompressed layer tars), read in place as
 * the Docker schema 2 images it holds. The manifests are made the way skopeo makes them for a
 * docker-archive source, so config and layer digests are the ones skopeo and docker see; the
 * layers are labelled as the uncompressed tars they are.
 */
export class DockerArchiveReader implements Registry {
  readonly description: string;
  private readonly blobs = new Map<string, TarEntry>();
  private readonly manifests = new Map<string, Buffer>();
  readonly images: DockerArchiveImage[] = [];

  private constructor(private readonly tar: TarFile) {
    this.description = `docker-archive ${tar.file}`;
  }

  /** Whether an opened tar is a docker-archive (`docker save` output: manifest.json at its root). */
  static isDockerArchive(tar: TarFile): boolean {
    return tar.entries.has("manifest.json");
  }

  static async open(file: string): Promise<DockerArchiveReader> {
    return DockerArchiveReader.fromTar(await TarFile.open(file));
  }

  /** Reads an opened tar as a docker-archive; it is closed when it is not a usable one. */
  static async fromTar(tar: TarFile): Promise<DockerArchiveReader> {
    try {
      if (!DockerArchiveReader.isDockerArchive(tar)) {
        throw invalid(tar.file, "it has no manifest.json (is it an oci-archive?)");
      }
      const reader = new DockerArchiveReader(tar);
      await reader.load();
      return reader;
    } catch (err) {
      await tar.close();
      throw err;
    }
  }

  close(): Promise<void> {
    return this.tar.close();
  }

  private async load(): Promise<void> {
    const file = this.tar.file;
    let items: unknown;
    try {
      items = JSON.parse((await this.tar.read("manifest.json")).toString("utf8"));
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      throw invalid(file, `manifest.json is not JSON (${(err as Error).message})`);
    }
    if (!Array.isArray(items)) throw invalid(file, "manifest.json is not a list of images");
    for (const [i, raw] of (items as ManifestItem[]).entries()) {
      const what = `image ${i + 1} of manifest.json`;
      const { Config, RepoTags, Layers } = raw ?? {};
      if (typeof Config !== "string") throw invalid(file, `${what} has no Config`);
      if (!Array.isArray(Layers) || Layers.some((l) => typeof l !== "string")) {
        throw invalid(file, `${what} has no list of Layers`);
      }
      const repoTags = Array.isArray(RepoTags) ? RepoTags.filter((t) => typeof t === "string") : [];
      const configEntry = this.entry(Config, what);
      const config = await this.tar.read(Config);
      let diffIds: unknown;
      try {
        diffIds = (JSON.parse(config.toString("utf8")) as { rootfs?: { diff_ids?: unknown } }).rootfs
          ?.diff_ids;
      } catch {
        throw invalid(file, `${what}: ${Config} is not JSON`);
      }
      if (!Array.isArray(diffIds) || diffIds.length !== Layers.length || !diffIds.every((d) => isDigest(d))) {
        throw invalid(file, `${what}: the config's rootfs.diff_ids do not match its ${Layers.length} Layers`);
      }
      const configDigest = digestOf(config);
      this.blobs.set(configDigest, configEntry);
      const layers: Descriptor[] = [];
      for (const [j, path] of (Layers as string[]).entries()) {
        const entry = this.entry(path, what);
        await this.refuseCompressed(entry, path);
        // The layer's digest is its diff ID; the copy verifies the bytes against it as they stream.
        const digest = diffIds[j] as string;
        this.blobs.set(digest, entry);
        layers.push({ mediaType: dockerUncompressedLayerType, size: entry.size, digest });
      }
      // Key order and compact JSON as skopeo writes it, so only the layer media type differs.
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.dockerManifest,
          config: { mediaType: dockerConfigType, size: config.length, digest: configDigest },
          layers,
        }),
      );
      const digest = digestOf(manifest);
      this.manifests.set(digest, manifest);
      this.images.push({ repoTags, digest, manifest });
    }
  }

  private entry(path: string, what: string): TarEntry {
    const e = this.tar.entry(path);
    if (!e) throw invalid(this.tar.file, `${what} names ${path}, which is not in the archive`);
    return e;
  }

  private async refuseCompressed(e: TarEntry, path: string): Promise<void> {
    if (e.size < 2) return;
    const chunks: Buffer[] = [];
    for await (const c of this.tar.stream(e, { start: 0, end: 1 })) chunks.push(c as Buffer);
    const magic = Buffer.concat(chunks);
    if (magic[0] === 0x1f && magic[1] === 0x8b) {
      throw new RegistryError(
        "UNSUPPORTED",
        `${this.tar.file}: layer ${path} is gzip-compressed; Kagami imports docker-archive layers as the plain tars docker save writes`,
      );
    }
  }

  /** The image a reference names: a RepoTag as written (or `repo:reference`), a digest, or "" for the only one. */
  private find(repo: string, reference: string): DockerArchiveImage | undefined {
    if (reference === "") return this.images.length === 1 ? this.images[0] : undefined;
    if (isDigest(reference)) return this.images.find((i) => i.digest === reference);
    const names = [reference, `${repo}:${reference}`];
    return this.images.find((i) => i.repoTags.some((t) => names.includes(t)));
  }

  async getManifest(repo: string, reference: string): Promise<ManifestContent | undefined> {
    const image = this.find(repo, reference);
    if (!image) return undefined;
    return {
      digest: image.digest,
      mediaType: MediaType.dockerManifest,
      size: image.manifest.length,
      bytes: image.manifest,
    };
  }

  async headManifest(repo: string, reference: string): Promise<ManifestInfo | undefined> {
    const m = await this.getManifest(repo, reference);
    return m && { digest: m.digest, mediaType: m.mediaType, size: m.size };
  }

  async blobSize(_repo: string, digest: string): Promise<number | undefined> {
    parseDigest(digest);
    return this.manifests.get(digest)?.length ?? this.blobs.get(digest)?.size;
  }

  async getBlob(
    _repo: string,
    digest: string,
    range?: { start: number; end: number },
  ): Promise<BlobContent | undefined> {
    const e = this.blobs.get(digest);
    if (!e) return undefined;
    return { size: range ? range.end - range.start + 1 : e.size, stream: this.tar.stream(e, range) };
  }

  async listTags(repo: string): Promise<string[]> {
    const prefix = `${repo}:`;
    return this.images
      .flatMap((i) => i.repoTags)
      .flatMap((t) => (t.startsWith(prefix) ? [t.slice(prefix.length)] : []));
  }

  async catalog(): Promise<string[]> {
    const repos = this.images.flatMap((i) => i.repoTags).map((t) => t.slice(0, t.lastIndexOf(":")));
    return [...new Set(repos)].sort();
  }

  /** docker save keeps no referrers. */
  async referrers(): Promise<Descriptor[]> {
    return [];
  }

  async putManifest(): Promise<PutManifestResult> {
    throw notWritable(this.description);
  }

  async putBlob(_repo: string, _digest: string, body: Readable): Promise<void> {
    body.destroy();
    throw notWritable(this.description);
  }
}
