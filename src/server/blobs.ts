import { RegistryError } from "../oci/errors.ts";
import type { MirroredBlob } from "../sync/mirror.ts";
import type { AppDeps, Ctx } from "./context.ts";
import { emptyResponse, setHeaders } from "./context.ts";
import { parseRangeHeader } from "./http-util.ts";

function unknown(repo: string, digest: string): RegistryError {
  return new RegistryError("BLOB_UNKNOWN", `blob ${digest} is not in repository '${repo}'`, {
    detail: { name: repo, digest },
  });
}

export function blobHandlers({ stores, mirror }: AppDeps) {
  async function serve(ctx: Ctx, withBody: boolean) {
    const { repo, ref: digest } = ctx.state;
    const registry = stores.for(repo);
    let size = await registry.blobSize(repo, digest);
    let mirrored: MirroredBlob | undefined;
    if (size === undefined) {
      const m = mirror();
      if (m && withBody) {
        mirrored = await m.blob(repo, digest);
        size = mirrored?.size;
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
      ctx.body = mirrored.open(range);
      ctx.length = length;
      return;
    }
    const blob = await registry.getBlob(repo, digest, range);
    if (!blob) throw unknown(repo, digest);
    ctx.body = blob.stream;
    ctx.length = length;
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
