import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import {
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  stat,
  symlink,
  unlink,
} from "node:fs/promises";
import { basename, dirname, join, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { digestOf, isDigest, newHash, parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { MediaType } from "../oci/mediatypes.ts";
import { assertValidName, isValidTag } from "../oci/names.ts";
import type {
  BlobContent,
  ManifestContent,
  ManifestInfo,
  Page,
  PutManifestResult,
  Registry,
} from "../registry/registry.ts";

/**
 * The tree `oc image mirror --dir` writes for `file://` references, so that either tool reads what
 * the other wrote: `v2/<repo>/blobs/<digest>` (manifests too), `v2/<repo>/manifests/<digest>` a hard
 * link to the manifest's blob, and `v2/<repo>/manifests/<tag>` a symlink whose last path element is
 * the digest.
 */
export class OcDirRegistry implements Registry {
  constructor(readonly baseDir: string) {}

  private repoDir(repo: string): string {
    assertValidName(repo);
    return join(this.baseDir, "v2", repo.split("/").join(sep));
  }

  private async resolve(repo: string, reference: string): Promise<string | undefined> {
    const manifests = join(this.repoDir(repo), "manifests");
    if (isDigest(reference)) return reference;
    // Not a tag at all ("../x"): nothing by that name can be in the tree, and it must not be looked up.
    if (!isValidTag(reference)) return undefined;
    try {
      const target = await readlink(join(manifests, reference));
      return basename(target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  async getManifest(repo: string, reference: string): Promise<ManifestContent | undefined> {
    const digest = await this.resolve(repo, reference);
    if (!digest || !isDigest(digest)) return undefined;
    let bytes: Buffer;
    try {
      bytes = await readFile(join(this.repoDir(repo), "manifests", digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    return { digest, mediaType: mediaTypeOf(bytes), size: bytes.length, bytes };
  }

  async headManifest(repo: string, reference: string): Promise<ManifestInfo | undefined> {
    const m = await this.getManifest(repo, reference);
    return m && { digest: m.digest, mediaType: m.mediaType, size: m.size };
  }

  async putManifest(repo: string, reference: string, bytes: Buffer): Promise<PutManifestResult> {
    const digest = isDigest(reference) ? reference : digestOf(bytes);
    const { algorithm } = parseDigest(digest);
    if (digestOf(bytes, algorithm) !== digest) {
      throw new RegistryError("DIGEST_INVALID", `manifest content does not match ${digest}`);
    }
    const dir = this.repoDir(repo);
    const blob = join(dir, "blobs", digest);
    await writeAtomically(blob, bytes);
    const byDigest = join(dir, "manifests", digest);
    await replace(byDigest, (tmp) => link(blob, tmp));
    if (!isDigest(reference)) {
      assertTag(reference);
      await replace(join(dir, "manifests", reference), (tmp) => symlink(digest, tmp));
    }
    return { digest };
  }

  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    const st = await stat(join(this.repoDir(repo), "blobs", digest)).catch(() => undefined);
    return st?.isFile() ? st.size : undefined;
  }

  async getBlob(
    repo: string,
    digest: string,
    range?: { start: number; end: number },
  ): Promise<BlobContent | undefined> {
    const path = join(this.repoDir(repo), "blobs", digest);
    const size = await this.blobSize(repo, digest);
    if (size === undefined) return undefined;
    const stream = createReadStream(path, range ? { start: range.start, end: range.end } : {});
    return { size: range ? range.end - range.start + 1 : size, stream };
  }

  async putBlob(repo: string, digest: string, body: Readable, size?: number): Promise<void> {
    const path = join(this.repoDir(repo), "blobs", digest);
    const { algorithm } = parseDigest(digest);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${randomUUID()}.download`;
    const hash = newHash(algorithm);
    let bytes = 0;
    body.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    try {
      await pipeline(body, createWriteStream(tmp));
      const got = `${algorithm}:${hash.digest("hex")}`;
      if (got !== digest || (size !== undefined && bytes !== size)) {
        throw new RegistryError("DIGEST_INVALID", `blob content is ${got} (${bytes} bytes), not ${digest}`);
      }
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }

  async mountBlob(repo: string, digest: string, from?: string): Promise<boolean> {
    if (!from) return false;
    const source = join(this.repoDir(from), "blobs", digest);
    if (!(await stat(source).catch(() => undefined))?.isFile()) return false;
    await replace(join(this.repoDir(repo), "blobs", digest), (tmp) => link(source, tmp));
    return true;
  }

  async listTags(repo: string, _page?: Page): Promise<string[]> {
    const dir = join(this.repoDir(repo), "manifests");
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new RegistryError("NAME_UNKNOWN", `repository ${repo} is not under ${this.baseDir}`);
      }
      throw err;
    }
    const tags: string[] = [];
    for (const n of names) {
      if ((await lstat(join(dir, n))).isSymbolicLink()) tags.push(n);
    }
    return tags.sort();
  }

  async catalog(_page?: Page): Promise<string[]> {
    return [];
  }

  async referrers(_repo: string, _digest: string): Promise<Descriptor[]> {
    return [];
  }
}

/** A tag is a file name here: one that is not a valid tag ("../x") could reach outside the tree. */
function assertTag(reference: string): void {
  if (!isValidTag(reference))
    throw new RegistryError("MANIFEST_INVALID", `'${reference}' is not a valid tag`);
}

function mediaTypeOf(bytes: Buffer): string {
  try {
    const doc = JSON.parse(bytes.toString("utf8")) as { mediaType?: unknown; manifests?: unknown };
    if (typeof doc.mediaType === "string") return doc.mediaType;
    return Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
  } catch {
    return MediaType.ociManifest;
  }
}

async function writeAtomically(path: string, data: Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomUUID()}.download`;
  const out = createWriteStream(tmp);
  await new Promise<void>((resolve, reject) => {
    out.on("error", reject);
    out.end(data, () => resolve());
  });
  await rename(tmp, path);
}

/** Creates a link under a temporary name, then renames it over `path` (as oc does). */
async function replace(path: string, make: (tmp: string) => Promise<void>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomUUID()}.download`;
  await make(tmp);
  await rename(tmp, path);
}
