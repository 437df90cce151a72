/**
 * Test blobs the way zot's `zb` makes them: a file of the wanted size whose first 4 KiB are random
 * (so every run has new digests) and the rest zeros. Each push then needs a blob no registry has seen,
 * or the registry could skip work it would do for a real push: a blob here is that shared body plus a
 * 16-byte tail of its own, and its digest is a copy of the body's hash state fed the tail, so a
 * unique 1 GiB blob costs no hashing at push time.
 */
import { createHash, type Hash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { sizeId } from "./util.ts";

const tailSize = 16;
const randomPrefix = 4096;

export interface Blob {
  digest: string;
  size: number;
  /** Bytes [start, end) as a stream: the shared body from the file, then this blob's tail. */
  stream(start?: number, end?: number): Readable;
}

export class BlobSource {
  private constructor(
    readonly size: number,
    readonly file: string,
    private readonly bodyHash: Hash,
  ) {}

  /** Writes the shared body (sparse past the random first page) and hashes it once. */
  static async create(dir: string, size: number): Promise<BlobSource> {
    if (size <= tailSize) throw new Error(`blob size ${size} is too small`);
    const file = join(dir, `${sizeId(size)}.body`);
    const bodySize = size - tailSize;
    const handle = await open(file, "w");
    try {
      await handle.truncate(bodySize);
      await handle.write(randomBytes(Math.min(randomPrefix, bodySize)), 0, undefined, 0);
    } finally {
      await handle.close();
    }
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }))
      hash.update(chunk as Buffer);
    return new BlobSource(size, file, hash);
  }

  /** A blob of this size that no other `name` shares. */
  variant(name: string): Blob {
    const tail = createHash("sha256").update(name).digest().subarray(0, tailSize);
    const digest = `sha256:${this.bodyHash.copy().update(tail).digest("hex")}`;
    const bodySize = this.size - tailSize;
    const file = this.file;
    return {
      digest,
      size: this.size,
      stream(start = 0, end = bodySize + tailSize): Readable {
        async function* gen() {
          if (start < bodySize) {
            yield* createReadStream(file, {
              start,
              end: Math.min(end, bodySize) - 1,
              highWaterMark: 1 << 20,
            });
          }
          if (end > bodySize) yield tail.subarray(Math.max(0, start - bodySize), end - bodySize);
        }
        return Readable.from(gen(), { objectMode: false });
      },
    };
  }
}

/** A small, unique image config (what zb's GetRandomImageConfig gives). */
export function configBlob(name: string): { bytes: Buffer; digest: string } {
  const bytes = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: {},
      rootfs: { type: "layers", diff_ids: [] },
      history: [{ created_by: `kagami bench ${name}` }],
    }),
  );
  return { bytes, digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}` };
}

export const ociManifestType = "application/vnd.oci.image.manifest.v1+json";
export const ociConfigType = "application/vnd.oci.image.config.v1+json";
export const ociLayerType = "application/vnd.oci.image.layer.v1.tar";

export function imageManifest(
  config: { digest: string; bytes: Buffer },
  layers: { digest: string; size: number }[],
): Buffer {
  return Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType: ociManifestType,
        config: { mediaType: ociConfigType, digest: config.digest, size: config.bytes.length },
        layers: layers.map((l) => ({ mediaType: ociLayerType, digest: l.digest, size: l.size })),
      },
      null,
      "\t",
    ),
  );
}

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}
