import { statfs } from "node:fs/promises";
import type { BlobFiles } from "./blob-files.ts";
import type { Metadata } from "./metadata.ts";

/** An image pulled (or fetched) more recently than this is being used: a client may be mid-pull. */
export const defaultKeepPulledWithinMs = 10 * 60_000;

/** Kagami's `cacheQuota` of a store: how much mirrored content it may hold, and how much disk to leave free. */
export interface CacheQuotaOptions {
  /** Mirrored content (bytes of blobs and manifests only mirrored images hold) above this is evicted. */
  maxSize?: number;
  /** Free space on the store's file system below this is made up by evicting mirrored images. */
  minFreeSpace?: number;
  keepPulledWithinMs: number;
  dryRun: boolean;
}

export interface EvictedImage {
  repo: string;
  digest: string;
  tags: string[];
  /** When it was last pulled (or fetched, if never pulled), ms since the epoch. */
  lastUsed: number;
  /** Bytes its removal frees: what no other manifest of the store holds. */
  bytes: number;
  /** Its manifests: the image's, the index's children and its referrers. */
  manifests: string[];
}

export interface QuotaPlan {
  mirroredBytes: number;
  freeBytes: number | undefined;
  /** Bytes to free to meet the quota; 0 when within it. */
  needBytes: number;
  evict: EvictedImage[];
  freedBytes: number;
  /** Digests that go with the evicted images (no other manifest of the store holds them). */
  blobs: string[];
  /** Images left alone because they were used within keepPulledWithin or are being fetched. */
  protectedImages: number;
}

/** Whether a blob or manifest is being fetched from an upstream right now (the mirror knows). */
export type Busy = (digest: string) => boolean;

interface ManifestRow {
  repo: string;
  digest: string;
  subject: string | null;
  mirrored: number;
  lastUsed: number;
}

function append<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

async function freeSpace(root: string): Promise<number | undefined> {
  try {
    const s = await statfs(root);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/**
 * A cheap look (one sum, one statfs) whether the quota may be exceeded; only then is the full plan,
 * which reads every manifest of the store, worth making.
 */
export async function quotaMayBeExceeded(
  meta: Metadata,
  root: string,
  opts: CacheQuotaOptions,
): Promise<boolean> {
  if (opts.maxSize !== undefined) {
    const total = (meta.db.prepare("SELECT coalesce(sum(size), 0) FROM blobs").pluck().get() as number) ?? 0;
    if (total > opts.maxSize) return true;
  }
  if (opts.minFreeSpace !== undefined) {
    const free = await freeSpace(root);
    if (free !== undefined && free < opts.minFreeSpace) return true;
  }
  return false;
}

/**
 * Which mirrored images to evict, least recently pulled first, until the store is within its quota.
 * Locally pushed manifests are never chosen, nor is content they hold; nor an image used within
 * keepPulledWithin or with any of its content being fetched. Nothing is changed.
 */
export async function planQuota(
  meta: Metadata,
  root: string,
  opts: CacheQuotaOptions,
  now: number,
  busy: Busy = () => false,
): Promise<QuotaPlan> {
  // Everything after this await runs without yielding, and so does applyQuota after it: no pull
  // can slip in between what the plan saw and what is deleted.
  const freeBytes = opts.minFreeSpace !== undefined ? await freeSpace(root) : undefined;
  meta.pulls.flush();
  const db = meta.db;
  const rows = db
    .prepare(
      `SELECT repo, digest, subject, mirrored,
         max(coalesce(pulled_at, 0), coalesce(pushed_at, created_at)) AS lastUsed FROM manifests`,
    )
    .all() as ManifestRow[];
  const refs = db.prepare("SELECT repo, parent, child, kind FROM manifest_refs").all() as {
    repo: string;
    parent: string;
    child: string;
    kind: string;
  }[];
  const sizes = new Map<string, number>();
  for (const b of db.prepare("SELECT digest, size FROM blobs").all() as { digest: string; size: number }[])
    sizes.set(b.digest, b.size);
  const key = (repo: string, digest: string) => `${repo}\0${digest}`;
  const byKey = new Map(rows.map((r) => [key(r.repo, r.digest), r]));
  const refsOf = new Map<string, { child: string; kind: string }[]>();
  // Who holds each digest: manifest rows, references from manifests, and links no manifest explains
  // (a push in progress). A digest is freed when its holders reach zero.
  const holders = new Map<string, number>();
  const localHeld = new Set<string>();
  const hold = (d: string) => holders.set(d, (holders.get(d) ?? 0) + 1);
  for (const r of rows) {
    hold(r.digest);
    if (!r.mirrored) localHeld.add(r.digest);
  }
  const explained = new Set<string>();
  for (const ref of refs) {
    const parent = byKey.get(key(ref.repo, ref.parent));
    if (!parent) continue;
    const k = key(ref.repo, ref.parent);
    append(refsOf, k, ref);
    hold(ref.child);
    explained.add(key(ref.repo, ref.child));
    if (!parent.mirrored) localHeld.add(ref.child);
  }
  for (const l of db.prepare("SELECT repo, digest FROM repo_blobs").all() as {
    repo: string;
    digest: string;
  }[]) {
    if (explained.has(key(l.repo, l.digest))) continue;
    hold(l.digest);
    localHeld.add(l.digest);
  }
  let mirroredBytes = 0;
  for (const d of holders.keys()) if (!localHeld.has(d)) mirroredBytes += sizes.get(d) ?? 0;

  const needBytes = Math.max(
    0,
    opts.maxSize !== undefined ? mirroredBytes - opts.maxSize : 0,
    opts.minFreeSpace !== undefined && freeBytes !== undefined ? opts.minFreeSpace - freeBytes : 0,
  );
  const plan: QuotaPlan = {
    mirroredBytes,
    freeBytes,
    needBytes,
    evict: [],
    freedBytes: 0,
    blobs: [],
    protectedImages: 0,
  };
  if (needBytes === 0) return plan;

  // Parents of each child manifest: a child another image's index also lists stays with that image.
  const parentsOf = new Map<string, string[]>();
  for (const ref of refs)
    if (ref.kind === "manifest" && byKey.has(key(ref.repo, ref.parent)))
      append(parentsOf, key(ref.repo, ref.child), key(ref.repo, ref.parent));
  const referrersOf = new Map<string, ManifestRow[]>();
  for (const r of rows) {
    if (r.subject === null) continue;
    const k = key(r.repo, r.subject);
    append(referrersOf, k, r);
  }
  // An image: a mirrored manifest no other manifest of its repository names, with the manifests
  // it names and its referrers.
  const images = rows
    .filter((r) => r.mirrored && r.subject === null && !parentsOf.has(key(r.repo, r.digest)))
    .map((top) => {
      const members: ManifestRow[] = [];
      const seen = new Set<string>();
      const visit = (m: ManifestRow) => {
        const k = key(m.repo, m.digest);
        if (seen.has(k) || !m.mirrored) return;
        seen.add(k);
        members.push(m);
        for (const ref of refsOf.get(k) ?? []) {
          const child = ref.kind === "manifest" ? byKey.get(key(m.repo, ref.child)) : undefined;
          const shared = parentsOf.get(key(m.repo, ref.child))?.some((p) => !seen.has(p));
          if (child && !shared) visit(child);
        }
        for (const r of referrersOf.get(k) ?? []) visit(r);
      };
      visit(top);
      return { top, members, lastUsed: Math.max(...members.map((m) => m.lastUsed)) };
    })
    .sort((a, b) => a.lastUsed - b.lastUsed);
  const tagsOf = db.prepare("SELECT tag FROM tags WHERE repo = ? AND digest = ? ORDER BY tag").pluck();
  for (const image of images) {
    if (plan.freedBytes >= needBytes) break;
    const digests = new Set<string>();
    for (const m of image.members) {
      digests.add(m.digest);
      for (const ref of refsOf.get(key(m.repo, m.digest)) ?? []) digests.add(ref.child);
    }
    if (image.lastUsed > now - opts.keepPulledWithinMs || [...digests].some(busy)) {
      plan.protectedImages++;
      continue;
    }
    let bytes = 0;
    const release = (d: string) => {
      const n = (holders.get(d) ?? 0) - 1;
      holders.set(d, n);
      if (n === 0 && !localHeld.has(d)) {
        bytes += sizes.get(d) ?? 0;
        if (sizes.has(d)) plan.blobs.push(d);
      }
    };
    for (const m of image.members) {
      release(m.digest);
      for (const ref of refsOf.get(key(m.repo, m.digest)) ?? []) release(ref.child);
    }
    plan.evict.push({
      repo: image.top.repo,
      digest: image.top.digest,
      tags: tagsOf.all(image.top.repo, image.top.digest) as string[],
      lastUsed: image.lastUsed,
      bytes,
      manifests: image.members.map((m) => m.digest),
    });
    plan.freedBytes += bytes;
  }
  return plan;
}

/**
 * Evicts what the plan names: the rows go first, in one transaction (the content is then invisible,
 * so nothing can start reading it), then the files. A read already under way keeps its open file.
 */
export async function applyQuota(meta: Metadata, files: BlobFiles, plan: QuotaPlan): Promise<void> {
  const db = meta.db;
  const unlink = db.prepare(
    `DELETE FROM repo_blobs WHERE repo = @repo AND digest = @digest
       AND NOT EXISTS (SELECT 1 FROM manifest_refs WHERE repo = @repo AND child = @digest)`,
  );
  const forget = db.prepare(
    `DELETE FROM blobs WHERE digest = @digest
       AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = @digest)
       AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = @digest)
       AND NOT EXISTS (SELECT 1 FROM manifest_refs WHERE child = @digest)`,
  );
  const childrenOf = db.prepare("SELECT child FROM manifest_refs WHERE repo = ? AND parent = ?").pluck();
  const gone: string[] = [];
  db.transaction(() => {
    for (const image of plan.evict) {
      const children = new Set<string>();
      for (const m of image.manifests) {
        for (const c of childrenOf.all(image.repo, m) as string[]) children.add(c);
        meta.deleteManifest(image.repo, m);
      }
      for (const digest of children) unlink.run({ repo: image.repo, digest });
    }
    for (const digest of plan.blobs) if (forget.run({ digest }).changes > 0) gone.push(digest);
  })();
  for (const digest of gone) await files.remove(digest);
}
