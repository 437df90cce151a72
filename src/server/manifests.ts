import { digestOf } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { maxManifestSize } from "../oci/manifest.ts";
import { parseReference } from "../oci/reference.ts";
import type { TagGuard } from "../store/metadata.ts";
import type { AppDeps, Ctx } from "./context.ts";
import { emptyResponse, setHeaders } from "./context.ts";
import { readLimited } from "./http-util.ts";

function unknown(repo: string, ref: string): RegistryError {
  return new RegistryError("MANIFEST_UNKNOWN", `manifest '${ref}' is not in repository '${repo}'`, {
    detail: { name: repo, reference: ref },
  });
}

/**
 * A new tag, or one that already points at the pushed manifest, needs create; moving a tag needs
 * update, so create alone makes tags immutable.
 */
function tagPermission(ctx: Ctx, repo: string, tag: string): TagGuard {
  return (current, next) => {
    if (current === undefined || current === next) {
      ctx.state.require(repo, "create");
      return;
    }
    try {
      ctx.state.require(repo, "update");
    } catch (err) {
      if (!(err instanceof RegistryError) || err.code !== "DENIED") throw err;
      const who = ctx.state.identity ? `user '${ctx.state.identity.user}'` : "anonymous access";
      throw new RegistryError(
        "DENIED",
        `tag '${tag}' of '${repo}' already exists and points at ${current}; moving it to ${next} needs the update permission, which ${who} does not have (push under a new tag instead)`,
        { detail: { repository: repo, tag, current, action: "update" } },
      );
    }
  };
}

export function manifestHandlers({ stores }: AppDeps) {
  return {
    async head(ctx: Ctx) {
      const { repo, ref } = ctx.state;
      await ctx.state.mirror?.ensureManifest(repo, ref);
      const info = await stores.for(repo).headManifest(repo, ref);
      if (!info) throw unknown(repo, ref);
      ctx.status = 200;
      setHeaders(ctx, { "Content-Type": info.mediaType, "Docker-Content-Digest": info.digest });
      ctx.length = info.size;
    },

    async get(ctx: Ctx) {
      const { repo, ref } = ctx.state;
      await ctx.state.mirror?.ensureManifest(repo, ref);
      const store = stores.for(repo);
      const m = await store.getManifest(repo, ref);
      if (!m) throw unknown(repo, ref);
      store.notePull(repo, m.digest);
      ctx.status = 200;
      ctx.body = m.bytes;
      setHeaders(ctx, { "Content-Type": m.mediaType, "Docker-Content-Digest": m.digest });
    },

    async put(ctx: Ctx) {
      const { repo, ref } = ctx.state;
      const body = await readLimited(ctx.req, maxManifestSize);
      const reference = parseReference(ref);
      const registry = stores.for(repo);
      let tagGuard: TagGuard | undefined;
      if (reference.kind === "tag") {
        tagGuard = tagPermission(ctx, repo, reference.tag);
        // Refused here before the body is written; the store asks again where the tag is set.
        tagGuard(registry.meta.resolveTag(repo, reference.tag), digestOf(body));
      } else {
        ctx.state.require(repo, "create");
      }
      const result = await registry.putManifest(repo, ref, body, ctx.get("Content-Type") || undefined, {
        tagGuard,
      });
      emptyResponse(ctx, 201);
      setHeaders(ctx, {
        Location: `/v2/${repo}/manifests/${result.digest}`,
        "Docker-Content-Digest": result.digest,
      });
      if (result.subject) ctx.set("OCI-Subject", result.subject);
    },

    async delete(ctx: Ctx) {
      const { repo, ref } = ctx.state;
      await stores.for(repo).deleteManifest(repo, ref);
      emptyResponse(ctx, 202);
    },
  };
}
