import { parseDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import type { AppDeps, Ctx } from "./context.ts";
import { emptyResponse, setHeaders } from "./context.ts";
import { hasBody, parseContentRange, queryString } from "./http-util.ts";

/** `Range` of an upload in distribution's inclusive form; an empty upload reports 0-0 as clients expect. */
function rangeHeader(size: number): string {
  return `0-${Math.max(size - 1, 0)}`;
}

function requireDigest(ctx: Ctx): string {
  const digest = queryString(ctx.query.digest);
  if (!digest) {
    throw new RegistryError("DIGEST_INVALID", "the digest query parameter is required to complete an upload");
  }
  parseDigest(digest);
  return digest;
}

export function uploadHandlers({ stores }: AppDeps, canRead: (ctx: Ctx, repo: string) => boolean) {
  const uploadsOf = (repo: string) => stores.for(repo).uploads;

  function accepted(ctx: Ctx, repo: string, id: string, size: number, status: number) {
    emptyResponse(ctx, status);
    setHeaders(ctx, {
      Location: `/v2/${repo}/blobs/uploads/${id}`,
      Range: rangeHeader(size),
      "Docker-Upload-UUID": id,
    });
  }

  function created(ctx: Ctx, repo: string, digest: string) {
    emptyResponse(ctx, 201);
    setHeaders(ctx, { Location: `/v2/${repo}/blobs/${digest}`, "Docker-Content-Digest": digest });
  }

  return {
    async start(ctx: Ctx) {
      const { repo } = ctx.state;
      const mount = queryString(ctx.query.mount);
      if (mount !== undefined) {
        const from = queryString(ctx.query.from);
        // A mount works within one store; across sub-paths the client uploads instead.
        const registry = stores.for(repo);
        const size =
          from !== undefined && stores.for(from) !== registry
            ? undefined
            : registry.mount(repo, mount, from, (r) => canRead(ctx, r));
        if (size !== undefined) {
          created(ctx, repo, mount);
          return;
        }
      }
      const digest = queryString(ctx.query.digest);
      if (digest !== undefined && mount === undefined) {
        parseDigest(digest);
        const id = await uploadsOf(repo).start(repo);
        try {
          await uploadsOf(repo).append(repo, id, ctx.req);
        } catch (err) {
          await uploadsOf(repo)
            .cancel(repo, id)
            .catch(() => {});
          throw err;
        }
        await uploadsOf(repo).commit(repo, id, digest);
        created(ctx, repo, digest);
        return;
      }
      const id = await uploadsOf(repo).start(repo);
      accepted(ctx, repo, id, 0, 202);
    },

    async status(ctx: Ctx) {
      const { repo, ref: id } = ctx.state;
      const size = await uploadsOf(repo).size(repo, id);
      accepted(ctx, repo, id, size, 204);
    },

    async patch(ctx: Ctx) {
      const { repo, ref: id } = ctx.state;
      const range = parseContentRange(ctx.get("Content-Range") || undefined);
      const size = await uploadsOf(repo).append(repo, id, ctx.req, range);
      accepted(ctx, repo, id, size, 202);
    },

    async finish(ctx: Ctx) {
      const { repo, ref: id } = ctx.state;
      const digest = requireDigest(ctx);
      if (hasBody(ctx.req)) {
        const range = parseContentRange(ctx.get("Content-Range") || undefined);
        await uploadsOf(repo).append(repo, id, ctx.req, range);
      }
      await uploadsOf(repo).commit(repo, id, digest);
      created(ctx, repo, digest);
    },

    async cancel(ctx: Ctx) {
      const { repo, ref: id } = ctx.state;
      await uploadsOf(repo).cancel(repo, id);
      emptyResponse(ctx, 204);
    },
  };
}
