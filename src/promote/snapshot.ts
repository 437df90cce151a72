import { Limiter } from "../copy/limit.ts";
import { isDigest } from "../oci/digest.ts";
import { indexTypes } from "../oci/mediatypes.ts";
import { isValidName, isValidTag } from "../oci/names.ts";
import type { Registry } from "../registry/registry.ts";

/** What a registry path holds: image name (below the path) → digest → tags. */
export type Inventory = Map<string, Map<string, string[]>>;

export interface SnapshotOptions {
  /** Leave out untagged manifests that an index lists (the promoter's --minimal-snapshot). */
  minimal?: boolean;
  concurrency?: number;
}

function add(inv: Inventory, name: string, digest: string, tag?: string): void {
  // What a registry lists is not trusted: a name, digest or tag that is not one is left out
  // rather than written into a file people review and promote from.
  if (!isDigest(digest) || (tag !== undefined && !isValidTag(tag))) return;
  let dmap = inv.get(name);
  if (!dmap) {
    dmap = new Map();
    inv.set(name, dmap);
  }
  const tags = dmap.get(digest) ?? [];
  if (tag && !tags.includes(tag)) tags.push(tag);
  dmap.set(digest, tags);
}

/**
 * Reads every repository below `prefix` (the catalog, then each repository's tags) and what each
 * tag points at. The distribution API cannot list untagged manifests, except those an index
 * names, which are listed untagged as the promoter lists them.
 */
export async function snapshotRegistry(
  registry: Registry,
  prefix: string,
  opts: SnapshotOptions = {},
): Promise<Inventory> {
  const limiter = new Limiter(opts.concurrency ?? 8);
  const under = prefix ? `${prefix}/` : "";
  const repos = (await registry.catalog()).filter(
    (r) => r.startsWith(under) && r.length > under.length && isValidName(r),
  );
  const inv: Inventory = new Map();
  await Promise.all(
    repos.map(async (repo) => {
      const name = repo.slice(under.length);
      const tags = (await limiter.run(() => registry.listTags(repo))).filter(isValidTag);
      await Promise.all(
        tags.map((tag) =>
          limiter.run(async () => {
            const m = await registry.headManifest(repo, tag);
            if (!m) return; // deleted while we looked
            add(inv, name, m.digest, tag);
            if (opts.minimal || !indexTypes.has(m.mediaType)) return;
            const full = await registry.getManifest(repo, m.digest);
            const children = full
              ? (JSON.parse(full.bytes.toString("utf8")) as { manifests?: { digest?: unknown }[] }).manifests
              : [];
            for (const c of children ?? []) if (typeof c.digest === "string") add(inv, name, c.digest);
          }),
        ),
      );
    }),
  );
  return inv;
}

/** Only the digests that carry `tag`, each with all its tags (the promoter's --snapshot-tag). */
export function filterByTag(inv: Inventory, tag: string): Inventory {
  const out: Inventory = new Map();
  for (const [name, dmap] of inv) {
    for (const [digest, tags] of dmap) {
      if (!tags.includes(tag)) continue;
      if (!out.has(name)) out.set(name, new Map());
      out.get(name)?.set(digest, tags);
    }
  }
  return out;
}

function sorted(inv: Inventory): [string, [string, string[]][]][] {
  return [...inv]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, dmap]) => [
      name,
      [...dmap].sort(([a], [b]) => (a < b ? -1 : 1)).map(([d, t]) => [d, [...t].sort()]),
    ]);
}

/** The images.yaml format of a thin manifest: a list of {name, dmap}, sorted. */
export function inventoryYaml(inv: Inventory): string {
  let out = "";
  for (const [name, digests] of sorted(inv)) {
    // Names are checked repository names (plain YAML); JSON strings are YAML double-quoted
    // scalars, so nothing in a value can end its quote.
    out += `- name: ${name}\n  dmap:\n`;
    for (const [digest, tags] of digests)
      out += `    ${JSON.stringify(digest)}: [${tags.map((t) => JSON.stringify(t)).join(", ")}]\n`;
  }
  return out;
}

/** One line per tag (`name@digest,name:tag`), `-` for an untagged digest. */
export function inventoryCsv(inv: Inventory): string {
  let out = "";
  for (const [name, digests] of sorted(inv)) {
    for (const [digest, tags] of digests) {
      if (tags.length === 0) out += `${name}@${digest},-\n`;
      for (const t of tags) out += `${name}@${digest},${name}:${t}\n`;
    }
  }
  return out;
}
