import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { finished, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type DigestAlgorithm, newHash, parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import type { BlobFiles } from "./blob-files.ts";
import { isNotFound } from "./fsutil.ts";
import type { Metadata } from "./metadata.ts";
import { isStorageFull } from "./storage-full.ts";

/** A running hash kept while the process lives; after a restart the file is hashed again at commit. */
interface HashState {
  hash: ReturnType<typeof newHash>;
  algorithm: DigestAlgorithm;
  offset: number;
}

export interface ByteRange {
  start: number;
  end: number;
}

/** Upload sessions: data files in `uploads/`, one row each in SQLite, so status and resume survive a restart. */
const touchEveryMs = 60_000;
/** Socket chunks (about 64 KiB) gathered while a disk write is under way go out in one writev. */
const writeBuffer = 4 * 1024 * 1024;

export class Uploads {
  readonly dir: string;
  private readonly hashes = new Map<string, HashState>();
  private readonly busy = new Set<string>();
  /** When each live session's row was last touched. */
  private readonly touched = new Map<string, number>();

  constructor(
    root: string,
    private readonly meta: Metadata,
    private readonly files: BlobFiles,
  ) {
    this.dir = join(root, "uploads");
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** The staging file of an upload, for writers that stream into it themselves (the mirror). */
  file(id: string): string {
    return join(this.dir, id);
  }

  async start(repo: string): Promise<string> {
    const id = randomUUID();
    const handle = await open(this.file(id), "wx");
    await handle.close();
    try {
      this.meta.createUpload(id, repo);
    } catch (err) {
      await unlink(this.file(id)).catch(() => {});
      throw err;
    }
    this.touched.set(id, Date.now());
    this.hashes.set(id, { hash: newHash("sha256"), algorithm: "sha256", offset: 0 });
    return id;
  }

  private lookup(repo: string, id: string): void {
    const row = /^[0-9a-f-]{36}$/.test(id) ? this.meta.getUpload(id) : undefined;
    if (!row || row.repo !== repo) {
      throw new RegistryError(
        "BLOB_UPLOAD_UNKNOWN",
        `upload '${id.slice(0, 64)}' is not known in repository '${repo}'`,
      );
    }
  }

  /** Bytes received so far. */
  async size(repo: string, id: string): Promise<number> {
    this.lookup(repo, id);
    try {
      return (await stat(this.file(id))).size;
    } catch (err) {
      if (isNotFound(err)) {
        this.meta.deleteUpload(id);
        throw new RegistryError("BLOB_UPLOAD_UNKNOWN", `upload '${id}' lost its data and was discarded`);
      }
      throw err;
    }
  }

  /**
   * Appends a chunk. With a Content-Range the chunk must start exactly where the upload stands;
   * anything else is a 416 carrying the current Range so the client can resume.
   */
  async append(repo: string, id: string, body: Readable, range?: ByteRange): Promise<number> {
    if (this.busy.has(id)) {
      const size = await this.size(repo, id);
      throw rangeError(`another request is writing to upload '${id}'`, size);
    }
    this.busy.add(id);
    try {
      const size = await this.size(repo, id);
      if (range && range.start !== size) {
        throw rangeError(
          `chunk starts at ${range.start} but the upload has ${size} bytes; send from ${size}`,
          size,
        );
      }
      let state = this.hashes.get(id);
      if (state && state.offset !== size) {
        this.hashes.delete(id);
        state = undefined;
      }
      let written = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          state?.hash.update(chunk);
          written += chunk.length;
          cb(null, chunk);
        },
      });
      try {
        await writeBody(
          body,
          counter,
          createWriteStream(this.file(id), { flags: "a", highWaterMark: writeBuffer }),
        );
      } catch (err) {
        this.hashes.delete(id);
        // A full disk must not stay full because of a half-written session: drop it now, not at uploadMaxAge.
        if (isStorageFull(err)) await this.remove(id).catch(() => {});
        throw err;
      }
      if (state) state.offset += written;
      // The row's updated_at only serves the purge of abandoned sessions (idle for hours): refreshing
      // it once a minute spares a synchronous SQLite commit (an fsync) on every chunk.
      const now = Date.now();
      if (now - (this.touched.get(id) ?? 0) >= touchEveryMs) {
        this.meta.touchUpload(id);
        this.touched.set(id, now);
      }
      const total = size + written;
      if (range && range.end - range.start + 1 !== written) {
        this.hashes.delete(id);
        throw rangeError(
          `Content-Range announced ${range.end - range.start + 1} bytes but ${written} arrived; resume from ${total}`,
          total,
        );
      }
      return total;
    } finally {
      this.busy.delete(id);
    }
  }

  /** Verifies the upload against `digest`, moves it into the blob store and links it into `repo`. */
  async commit(repo: string, id: string, digest: string): Promise<{ digest: string; size: number }> {
    const { algorithm } = parseDigest(digest);
    const size = await this.size(repo, id);
    const state = this.hashes.get(id);
    let actual: string;
    if (state && state.offset === size && state.algorithm === algorithm) {
      actual = `${algorithm}:${state.hash.digest("hex")}`;
    } else {
      const hash = newHash(algorithm);
      await pipeline(createReadStream(this.file(id)), hash);
      actual = `${algorithm}:${hash.digest("hex")}`;
    }
    this.hashes.delete(id);
    if (actual !== digest) {
      await this.cancel(repo, id);
      throw new RegistryError(
        "DIGEST_INVALID",
        `uploaded content has digest ${actual}, not the ${digest} given; the upload was discarded`,
        { detail: { expected: digest, actual } },
      );
    }
    try {
      await this.files.adopt(this.file(id), digest);
      this.meta.linkBlob(repo, digest, size, id);
    } catch (err) {
      if (isStorageFull(err)) await this.remove(id).catch(() => {});
      throw err;
    }
    this.touched.delete(id);
    return { digest, size };
  }

  /**
   * Moves an upload whose digest and size the caller has already verified (it hashed the bytes
   * while writing them) into the blob store, without reading it again.
   */
  async commitVerified(repo: string, id: string, digest: string, size: number): Promise<void> {
    this.lookup(repo, id);
    this.hashes.delete(id);
    await this.files.adopt(this.file(id), digest);
    this.meta.linkBlob(repo, digest, size, id);
    this.touched.delete(id);
  }

  async cancel(repo: string, id: string): Promise<void> {
    this.lookup(repo, id);
    await this.remove(id);
  }

  /**
   * The file goes first: it holds the space, and a full database may refuse the row's delete
   * (size() drops a row whose file is gone, and the purge does too).
   */
  private async remove(id: string): Promise<void> {
    this.hashes.delete(id);
    this.touched.delete(id);
    await unlink(this.file(id)).catch(() => {});
    this.meta.deleteUpload(id);
  }

  /** Removes sessions idle longer than `maxAgeMs`, and staging files that no session owns. */
  async purge(maxAgeMs: number): Promise<number> {
    let removed = 0;
    for (const id of this.meta.staleUploads(Date.now() - maxAgeMs)) {
      if (this.busy.has(id)) continue;
      await this.remove(id);
      removed++;
    }
    const known = this.meta.uploadIds();
    for (const name of await readdir(this.dir)) {
      if (known.has(name)) continue;
      const st = await stat(this.file(name)).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 60_000) {
        await unlink(this.file(name)).catch(() => {});
        removed++;
      }
    }
    for (const name of await readdir(this.files.tmpDir)) {
      const p = join(this.files.tmpDir, name);
      const st = await stat(p).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 60_000) await unlink(p).catch(() => {});
    }
    return removed;
  }
}

/**
 * Streams a request body through `through` into `file`. Unlike pipeline(body, ...), a failed write
 * neither destroys the body nor its socket: the rest of the body is drained so the server can still
 * answer (a 507 on a full disk) instead of cutting the connection.
 */
async function writeBody(body: Readable, through: Transform, file: Writable): Promise<void> {
  const stopWatching = finished(body, (err) => {
    if (err) through.destroy(err);
  });
  body.pipe(through);
  try {
    await pipeline(through, file);
  } catch (err) {
    body.unpipe(through);
    if (!body.destroyed && !body.readableEnded) body.resume();
    throw err;
  } finally {
    stopWatching();
  }
}

function rangeError(message: string, size: number): RegistryError {
  return new RegistryError("BLOB_UPLOAD_INVALID", message, {
    status: 416,
    headers: { Range: `0-${Math.max(size - 1, 0)}` },
  });
}
