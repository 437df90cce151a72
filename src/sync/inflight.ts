import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { type FileHandle, open } from "node:fs/promises";
import type { Logger } from "pino";
import { parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { pumpStream } from "../registry/blob-pump.ts";
import type { LocalRegistry } from "../registry/local.ts";
import type { BlobContent, BlobPump, ViewSink } from "../registry/registry.ts";
import { maxViewBytes } from "../remote/raw-http.ts";
import { StagingWriter } from "./staging-writer.ts";

/**
 * One upstream fetch of one blob, written to a staging file while it is hashed. Any number of
 * clients read the staging file as it grows (the server's sendFile with a GrowingFile); the last
 * byte is held back until the digest is proven, so no client ever receives the whole of a wrong blob.
 */
export class InflightBlob extends EventEmitter {
  written = 0;
  size = -1;
  done = false;
  error: Error | undefined;
  stagingPath = "";
  /** Repositories the blob is linked into when it completes. */
  readonly repos = new Set<string>();
  /** Resolves with false when no upstream has the blob. */
  readonly ready: Promise<boolean>;
  readonly finished: Promise<void>;
  private resolveReady!: (found: boolean) => void;
  private rejectReady!: (err: Error) => void;
  private resolveFinished!: () => void;
  private rejectFinished!: (err: Error) => void;

  constructor(
    readonly digest: string,
    readonly finalPath: string,
  ) {
    super();
    this.setMaxListeners(0);
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.finished = new Promise((res, rej) => {
      this.resolveFinished = res;
      this.rejectFinished = rej;
    });
    this.finished.catch(() => {});
    this.ready.catch(() => {});
  }

  started(size: number, stagingPath: string): void {
    this.size = size;
    this.stagingPath = stagingPath;
    this.resolveReady(true);
  }

  notFound(): void {
    this.resolveReady(false);
    this.resolveFinished();
  }

  progress(n: number): void {
    this.written += n;
    this.emit("progress");
  }

  complete(): void {
    this.done = true;
    this.emit("progress");
    this.resolveFinished();
  }

  fail(err: Error): void {
    this.error = err;
    this.rejectReady(err);
    this.rejectFinished(err);
    this.emit("progress");
  }

  /** Set once the content's digest is proven, which may be before the file is durable. */
  verifiedContent = false;

  verified(): void {
    this.verifiedContent = true;
    this.emit("progress");
  }

  /** Bytes a reader may have now: all of them once verified, else all but the last. */
  available(): number {
    if (this.done || this.verifiedContent) return this.size;
    return Math.max(0, Math.min(this.written, this.size - 1));
  }
}

/** Staging buffers of one fetch: enough to keep writing while the upstream runs ahead. */
const stagingBufferSize = 4 * 1024 * 1024;
const stagingBuffers = 4;

/** Opens the blob at one of the upstreams; undefined when none has it. */
export type BlobOpener = () => Promise<BlobContent | undefined>;

/** Shares upstream blob fetches: every request for a digest that is already coming joins that fetch. */
export class BlobFetcher {
  private readonly inflight = new Map<string, InflightBlob>();

  constructor(
    private readonly local: LocalRegistry,
    private readonly logger: Logger,
  ) {}

  get active(): number {
    return this.inflight.size;
  }

  isFetching(digest: string): boolean {
    return this.inflight.has(digest);
  }

  /** Starts the fetch of `digest` for `repo`, or joins the one under way. */
  fetch(repo: string, digest: string, openUpstream: BlobOpener): InflightBlob {
    const existing = this.inflight.get(digest);
    if (existing) {
      existing.repos.add(repo);
      return existing;
    }
    const blob = new InflightBlob(digest, this.local.files.path(digest));
    blob.repos.add(repo);
    this.inflight.set(digest, blob);
    void this.run(repo, blob, openUpstream).finally(() => this.inflight.delete(digest));
    return blob;
  }

  private async run(repo: string, blob: InflightBlob, openUpstream: BlobOpener): Promise<void> {
    const { algorithm } = parseDigest(blob.digest);
    let id: string | undefined;
    let fh: FileHandle | undefined;
    let writer: StagingWriter | undefined;
    let failed: Error | undefined;
    try {
      const content = await openUpstream();
      if (!content) {
        blob.notFound();
        return;
      }
      if (content.size < 0) {
        content.stream.destroy();
        throw new RegistryError(
          "BLOB_UNKNOWN",
          `upstream sent blob ${blob.digest} without a Content-Length`,
          {
            status: 502,
          },
        );
      }
      id = await this.local.uploads.start(repo);
      const path = this.local.uploads.file(id);
      fh = await open(path, "r+");
      blob.started(content.size, path);
      const hash = createHash(algorithm);
      const size = content.size;
      let received = 0;
      let failure: Error | undefined;
      let pump: BlobPump | undefined;
      const stop = (err: Error) => {
        failure ??= err;
        pump?.abort(failure);
      };
      // A small blob takes one buffer of its own size, not four of 4 MiB.
      const bufferSize = Math.min(stagingBufferSize, Math.max(size, 1));
      writer = new StagingWriter(fh, (n) => blob.progress(n), stop, {
        bufferSize,
        buffers: Math.min(stagingBuffers, Math.ceil(size / bufferSize) || 1),
      });
      const staging = writer;
      // Each view is hashed and copied into the writer's buffers before the producer reuses it.
      const sink: ViewSink = (view) => {
        if (failure) return false;
        if (received + view.length > size) {
          stop(
            new RegistryError("BLOB_UNKNOWN", `upstream sent more than the ${size} bytes of ${blob.digest}`, {
              status: 502,
            }),
          );
          return false;
        }
        hash.update(view);
        received += view.length;
        if (staging.write(view, maxViewBytes)) return true;
        staging.whenRoom(maxViewBytes, () => pump?.resume());
        return false;
      };
      pump = content.pump ? content.pump(sink) : pumpStream(content.stream, sink);
      if (failure) pump.abort(failure);
      await pump.done;
      if (failure) throw failure;
      await writer.finish();
      const actual = `${algorithm}:${hash.digest("hex")}`;
      if (blob.written !== content.size) {
        throw new RegistryError(
          "BLOB_UNKNOWN",
          `upstream ended blob ${blob.digest} after ${blob.written} of ${content.size} bytes`,
          { status: 502 },
        );
      }
      if (actual !== blob.digest) {
        throw new RegistryError(
          "BLOB_UNKNOWN",
          `upstream sent content with digest ${actual} for blob ${blob.digest}; it was discarded`,
          { status: 502 },
        );
      }
      // The digest is proven: clients may have the last byte now. Making the file durable (fsync,
      // rename, metadata) follows, and a later request is served from the blob store.
      blob.verified();
      await fh.sync();
      await fh.close();
      fh = undefined;
      await this.local.uploads.commitVerified(repo, id, blob.digest, content.size);
      id = undefined;
      for (const other of blob.repos) {
        if (other !== repo) this.local.meta.linkBlob(other, blob.digest, content.size);
      }
      blob.complete();
    } catch (err) {
      this.logger.warn(
        { digest: blob.digest, repo, err: (err as Error).message },
        "upstream blob fetch failed",
      );
      failed = err as Error;
    } finally {
      await writer?.idle();
      if (fh) await fh.close().catch(() => {});
      if (id) await this.local.uploads.cancel(repo, id).catch(() => {});
    }
    // Only now do readers learn of the failure: by then the staging file is gone, so a full disk
    // is freed before anyone retries.
    if (failed) blob.fail(failed);
  }
}
