import { MediaType } from "../oci/mediatypes.ts";
import type { AppDeps, Ctx } from "./context.ts";
import { parsePageSize, queryString } from "./http-util.ts";

/** Pages a sorted listing: asks for one more than `n` to know whether a `Link` to the next page is due. */
async function paged(
  ctx: Ctx,
  path: string,
  fetch: (last: string | undefined, n: number | undefined) => Promise<string[]>,
): Promise<string[]> {
  const n = parsePageSize(ctx.query.n);
  const last = queryString(ctx.query.last);
  if (n === 0) return [];
  const items = await fetch(last, n === undefined ? undefined : n + 1);
  if (n !== undefined && items.length > n) {
    items.length = n;
    const next = `${path}?n=${n}&last=${encodeURIComponent(items[n - 1]!)}`;
    ctx.set("Link", `<${next}>; rel="next"`);
  }
  return items;
}

export function listingHandlers({ stores }: AppDeps, canRead: (ctx: Ctx, repo: string) => boolean) {
  return {
    async tags(ctx: Ctx) {
      const { repo } = ctx.state;
      const tags = await paged(ctx, `/v2/${repo}/tags/list`, (last, n) =>
        stores.for(repo).listTags(repo, n === undefined ? { last } : { last, n }),
      );
      if (tags.length === 0) await stores.for(repo).listTags(repo, { n: 0 });
      ctx.body = { name: repo, tags };
    },

    async catalog(ctx: Ctx) {
      const repositories = await paged(ctx, "/v2/_catalog", async (last, n) => {
        // Filter while paging so a caller never learns of repositories it may not read.
        const out: string[] = [];
        let cursor = last;
        for (;;) {
          const batch = await stores.catalog({ last: cursor, n: n ?? 1000 });
          for (const r of batch) if (canRead(ctx, r)) out.push(r);
          if (batch.length < (n ?? 1000) || (n !== undefined && out.length >= n)) break;
          cursor = batch[batch.length - 1];
        }
        return n === undefined ? out : out.slice(0, n);
      });
      ctx.body = { repositories };
    },

    async referrers(ctx: Ctx) {
      const { repo, ref: digest } = ctx.state;
      const artifactType = queryString(ctx.query.artifactType);
      const manifests = await stores.for(repo).referrers(repo, digest, artifactType);
      const upstream = (await ctx.state.mirror?.referrers(repo, digest)) ?? [];
      const seen = new Set(manifests.map((m) => m.digest));
      for (const d of upstream) {
        if (seen.has(d.digest) || (artifactType !== undefined && d.artifactType !== artifactType)) continue;
        seen.add(d.digest);
        manifests.push(d);
      }
      if (artifactType !== undefined) ctx.set("OCI-Filters-Applied", "artifactType");
      ctx.type = MediaType.ociIndex;
      ctx.body = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests });
    },
  };
}
