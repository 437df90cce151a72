import { digestOf } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { maxManifestSize } from "../oci/manifest.ts";
import { parseReference } from "../oci/reference.ts";
import type { AppDeps, Ctx } from "./context.ts";
import { emptyResponse, setHeaders } from "./context.ts";
import { readLimited } from "./http-util.ts";

function unknown(repo: string, ref: string): RegistryError {
  return new RegistryError("MANIFEST_UNKNOWN", `manifest '${ref}' is not in repository '${repo}'`, {
    detail: { name: repo, reference: ref },
  });
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
      const m = await stores.for(repo).getManifest(repo, ref);
      if (!m) throw unknown(repo, ref);
      ctx.status = 200;
      ctx.body = m.bytes;
      setHeaders(ctx, { "Content-Type": m.mediaType, "Docker-Content-Digest": m.digest });
    },

    async put(ctx: Ctx) {
      const { repo, ref } = ctx.state;
      const body = await readLimited(ctx.req, maxManifestSize);
      const reference = parseReference(ref);
      const registry = stores.for(repo);
      const current = reference.kind === "tag" ? registry.meta.resolveTag(repo, reference.tag) : undefined;
      // A new tag or digest needs create; moving an existing tag needs update (create alone makes tags immutable).
      if (current !== undefined && current !== digestOf(body)) ctx.state.require(repo, "update");
      else ctx.state.require(repo, "create");
      const result = await registry.putManifest(repo, ref, body, ctx.get("Content-Type") || undefined);
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
