import { createReadStream, type ReadStream } from "node:fs";
import { mkdir, readFile, rename, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseDigest } from "../oci/digest.ts";
import { isNotFound, syncDir, syncFile, writeFileAtomic } from "./fsutil.ts";

/**
 * Content-addressed files shared by every repository: `blobs/<alg>/<2 hex>/<hex>`.
 * A file appears at its final path only by rename after its digest was verified and it was fsynced,
 * so whatever is at a blob path is complete and correct.
 */
export class BlobFiles {
  readonly blobsDir: string;
  readonly tmpDir: string;

  constructor(readonly root: string) {
    this.blobsDir = join(root, "blobs");
    this.tmpDir = join(root, "tmp");
  }

  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  path(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.blobsDir, algorithm, hex.slice(0, 2), hex);
  }

  async size(digest: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(digest))).size;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Moves a verified file into place. The caller has checked its digest. */
  async adopt(verifiedPath: string, digest: string): Promise<void> {
    const dest = this.path(digest);
    if ((await this.size(digest)) !== undefined) {
      await unlink(verifiedPath).catch(() => {});
      return;
    }
    await syncFile(verifiedPath);
    await mkdir(dirname(dest), { recursive: true });
    await rename(verifiedPath, dest);
    await syncDir(dirname(dest));
  }

  async writeVerified(digest: string, data: Uint8Array): Promise<void> {
    if ((await this.size(digest)) !== undefined) return;
    await writeFileAtomic(this.tmpDir, this.path(digest), data);
  }

  read(digest: string): Promise<Buffer> {
    return readFile(this.path(digest));
  }

  stream(digest: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.path(digest), range ? { start: range.start, end: range.end } : {});
  }

  async remove(digest: string): Promise<void> {
    await unlink(this.path(digest)).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }
}
