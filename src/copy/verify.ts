import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { parseDigest } from "../oci/digest.ts";

/** Content that is not what its descriptor says: the source is wrong or the transfer was damaged. */
export class BlobVerifyError extends Error {
  /** Another download may well be fine: the fault was on the way. */
  readonly retryable = true;

  constructor(
    message: string,
    readonly digest: string,
  ) {
    super(message);
    this.name = "BlobVerifyError";
  }
}

/**
 * Passes bytes through while hashing and counting them against a descriptor. The last chunk is
 * held back until the end proves digest and size right, so a destination never receives the whole
 * of a wrong blob; any mismatch errors the stream instead.
 */
export class VerifyingStream extends Transform {
  private readonly hash: Hash;
  private readonly algorithm: string;
  private held: Buffer | undefined;
  private n = 0;

  constructor(
    readonly digest: string,
    readonly size: number,
    private readonly onBytes?: (n: number) => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
    this.algorithm = parseDigest(digest).algorithm;
    this.hash = createHash(this.algorithm);
  }

  get bytes(): number {
    return this.n;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.n += chunk.length;
    if (this.n > this.size) {
      cb(
        new BlobVerifyError(
          `blob ${this.digest} is longer than the ${this.size} bytes its descriptor says`,
          this.digest,
        ),
      );
      return;
    }
    this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    const prev = this.held;
    this.held = chunk;
    if (prev) this.push(prev);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.n !== this.size) {
      cb(
        new BlobVerifyError(
          `blob ${this.digest} ended after ${this.n} of ${this.size} bytes (truncated)`,
          this.digest,
        ),
      );
      return;
    }
    const actual = `${this.algorithm}:${this.hash.digest("hex")}`;
    if (actual !== this.digest) {
      cb(
        new BlobVerifyError(
          `blob ${this.digest} arrived with digest ${actual} (corrupted in transit or at the source)`,
          this.digest,
        ),
      );
      return;
    }
    if (this.held) this.push(this.held);
    this.held = undefined;
    cb();
  }
}
