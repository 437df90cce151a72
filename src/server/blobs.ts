import { open, readFile } from "node:fs/promises";
import { RegistryError } from "../oci/errors.ts";
import { ByteLru } from "../store/byte-lru.ts";
import { isStorageFull } from "../store/storage-full.ts";
import type { MirroredBlob } from "../sync/mirror.ts";
import type { AppDeps, Ctx } from "./context.ts";
import { emptyResponse, setHeaders } from "./context.ts";
import { parseRangeHeader } from "./http-util.ts";

function unknown(repo: string, digest: string): RegistryError {
  return new RegistryError("BLOB_UNKNOWN", `blob ${digest} is not in repository '${repo}'`, {
    detail: { name: repo, digest },
  });
}

const chunkSize = 1024 * 1024;

/**
 * Small blobs (configs, small layers) are served from memory once read: for them the file's open,
 * read and close cost more than sending the bytes. Up to one read buffer each, 16 MiB in all.
 */
const smallBlobMax = chunkSize;
const smallBlobs = new ByteLru(16 * 1024 * 1024);

async function smallBlob(path: string, digest: string, size: number): Promise<Buffer> {
  const cached = smallBlobs.get(digest);
  if (cached) return cached;
  const bytes = await readFile(path);
  if (bytes.length !== size) throw new Error(`blob file ${path} holds ${bytes.length} bytes, not ${size}`);
  smallBlobs.set(digest, bytes);
  return bytes;
}

const freeBuffers: Buffer[] = [];

function takeBuffer(): Buffer {
  return freeBuffers.pop() ?? Buffer.allocUnsafeSlow(chunkSize);
}

function giveBuffer(b: Buffer): void {
  if (freeBuffers.length < 32) freeBuffers.push(b);
}

/**
 * Writes bytes [start, start + length) of a blob file to the response through two 1 MiB buffers from
 * a small shared pool: the next read runs while the previous chunk is written, and no buffer is
 * allocated (or left to the garbage collector) per chunk. A buffer returns to the pool only after
 * the write that used it completed. (Node has no sendfile; this is the next best thing.)
 */
/** A file still being written (a mirror fetch): how far it may be read, and a wait for more. */
export interface GrowingFile {
  available(): number;
  /** Resolves at the next progress (more bytes, completion or failure). */
  next(): Promise<void>;
  failure(): Error | undefined;
}

async function openFirst(paths: string[]) {
  let last: unknown;
  for (const p of paths) {
    try {
      return await open(p, "r");
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

/** What a blob answer sets, taken back when an error answer goes out instead. */
const blobHeaders = [
  "content-length",
  "content-range",
  "accept-ranges",
  "etag",
  "cache-control",
  "docker-content-digest",
  "content-type",
];

async function sendFile(
  ctx: Ctx,
  paths: string[],
  start: number,
  length: number,
  growing?: GrowingFile,
): Promise<void> {
  const path = paths[0]!;
  const fh = await openFirst(paths);
  const res = ctx.res;
  ctx.respond = false;
  res.statusCode = ctx.status;
  for (const [k, v] of Object.entries(ctx.response.headers)) {
    if (v !== undefined) res.setHeader(k, v as string | string[]);
  }
  res.setHeader("Content-Length", length);
  const bufs = [takeBuffer(), takeBuffer()];
  let closed = false;
  // Resolves the write in flight; also called on close, so a write whose callback never comes cannot hang us.
  let release: (() => void) | undefined;
  const onClose = () => {
    closed = true;
    release?.();
  };
  res.once("close", onClose);
  let writing: Promise<void> | undefined;
  let clean = false;
  let failure: unknown;
  try {
    for (let done = 0, i = 0; done < length; i++) {
      const buf = bufs[i % 2]!;
      let n = Math.min(buf.length, length - done);
      if (growing) {
        // Send what has been written and verified so far; wait when we have caught up.
        while (growing.available() <= start + done) {
          const failed = growing.failure();
          if (failed) throw failed;
          if (closed) return;
          await growing.next();
        }
        n = Math.min(n, growing.available() - (start + done));
      }
      for (let got = 0; got < n; ) {
        const { bytesRead } = await fh.read(buf, got, n - got, start + done + got);
        if (bytesRead === 0) throw new Error(`blob file ${path} is shorter than recorded`);
        got += bytesRead;
      }
      if (writing) await writing;
      // The client went away: a write of ours may still hold a buffer, so neither goes back to the pool.
      if (closed) return;
      done += n;
      const view = buf.subarray(0, n);
      const last = done >= length;
      writing = new Promise<void>((resolve) => {
        release = resolve;
        if (last) res.end(view, () => resolve());
        else res.write(view, () => resolve());
      });
    }
    await writing;
    clean = !closed || res.writableFinished;
  } catch (err) {
    if (res.headersSent || closed) res.destroy(err as Error);
    else {
      // Nothing was sent yet (a mirror fetch failed before its first byte): the client gets the
      // error as a spec answer (a 502, or 507 for a full disk) instead of a cut connection.
      for (const name of blobHeaders) res.removeHeader(name);
      ctx.respond = true;
      failure = err;
    }
  } finally {
    res.off("close", onClose);
    await fh.close();
    if (clean) for (const b of bufs) giveBuffer(b);
  }
  if (failure !== undefined) throw failure;
}

export function blobHandlers({ stores }: AppDeps) {
  async function serve(ctx: Ctx, withBody: boolean) {
    const { repo, ref: digest } = ctx.state;
    const registry = stores.for(repo);
    let size = await registry.blobSize(repo, digest);
    let mirrored: MirroredBlob | undefined;
    if (size !== undefined && ctx.state.mirror?.isMirrored(repo))
      ctx.state.mirror.metrics.cacheLookup("blob", true);
    if (size === undefined) {
      const m = ctx.state.mirror;
      if (m && withBody) {
        const found = await m.blob(repo, digest);
        if (found === "linked") size = await registry.blobSize(repo, digest);
        else {
          mirrored = found;
          size = mirrored?.size;
        }
      } else if (m) {
        size = await m.blobSize(repo, digest);
      }
    }
    if (size === undefined) throw unknown(repo, digest);
    setHeaders(ctx, {
      "Docker-Content-Digest": digest,
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      ETag: `"${digest}"`,
      "Cache-Control": "max-age=31536000",
    });
    const want = parseRangeHeader(ctx.get("Range") || undefined, size);
    if (want.kind === "unsatisfiable") {
      throw new RegistryError("RANGE_INVALID", `requested range is outside the blob's ${size} bytes`, {
        status: 416,
        headers: { "Content-Range": `bytes */${size}` },
      });
    }
    const range = want.kind === "range" ? want.range : undefined;
    ctx.status = range ? 206 : 200;
    if (range) ctx.set("Content-Range", `bytes ${range.start}-${range.end}/${size}`);
    const length = range ? range.end - range.start + 1 : size;
    if (!withBody || length === 0) {
      if (withBody) ctx.body = Buffer.alloc(0);
      ctx.length = length;
      ctx.type = "application/octet-stream";
      return;
    }
    if (mirrored) {
      await sendFile(ctx, mirrored.paths, range?.start ?? 0, length, mirrored.growing).catch(
        (err: unknown) => {
          if (err instanceof RegistryError || isStorageFull(err)) throw err;
          throw new RegistryError(
            "BLOB_UNKNOWN",
            `blob ${digest} of '${repo}' could not be fetched from upstream: ${(err as Error).message}`,
            { status: 502, detail: { name: repo, digest } },
          );
        },
      );
      return;
    }
    const path = registry.files.path(digest);
    if (size <= smallBlobMax) {
      const bytes = await smallBlob(path, digest, size);
      ctx.body = range ? bytes.subarray(range.start, range.end + 1) : bytes;
      return;
    }
    await sendFile(ctx, [path], range?.start ?? 0, length);
  }

  return {
    head: (ctx: Ctx) => serve(ctx, false),
    get: (ctx: Ctx) => serve(ctx, true),
    async delete(ctx: Ctx) {
      const { repo, ref: digest } = ctx.state;
      await stores.for(repo).deleteBlob(repo, digest);
      emptyResponse(ctx, 202);
    },
  };
}
