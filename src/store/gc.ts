import { readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { BlobFiles } from "./blob-files.ts";
import type { Metadata } from "./metadata.ts";

export interface GcResult {
  /** Repository links to blobs no manifest of that repository references. */
  linksRemoved: number;
  /** Blob files removed (referenced nowhere). */
  blobsRemoved: number;
  bytesFreed: number;
}

/**
 * Mark and sweep, as distribution and zot do it: a blob stays while a manifest of its repository
 * references it; anything younger than `delayMs` stays too, so a push in progress (blobs first,
 * manifest last) is never collected. Manifests themselves, tagged or not, are kept.
 */
export async function collectGarbage(meta: Metadata, files: BlobFiles, delayMs: number): Promise<GcResult> {
  const cutoff = Date.now() - delayMs;
  const db = meta.db;
  const result: GcResult = { linksRemoved: 0, blobsRemoved: 0, bytesFreed: 0 };
  result.linksRemoved = db
    .prepare(
      `DELETE FROM repo_blobs WHERE created_at < ? AND NOT EXISTS (
         SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repo = r.repo AND m.digest = r.parent
         WHERE r.repo = repo_blobs.repo AND r.child = repo_blobs.digest)`,
    )
    .run(cutoff).changes;
  const orphans = db
    .prepare(
      `SELECT digest, size FROM blobs b WHERE created_at < ?
         AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = b.digest)
         AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)`,
    )
    .all(cutoff) as { digest: string; size: number }[];
  const forget = db.prepare(
    `DELETE FROM blobs WHERE digest = ? AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?)
       AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = ?)`,
  );
  for (const o of orphans) {
    // The row goes first: a blob without a row is invisible, a row without its file would not be.
    if (forget.run(o.digest, o.digest, o.digest).changes === 0) continue;
    await files.remove(o.digest);
    result.blobsRemoved++;
    result.bytesFreed += o.size;
  }
  // Files no row speaks of (a crash between the rename and the metadata commit).
  const known = new Set((db.prepare("SELECT digest FROM blobs").pluck().all() as string[]).map((d) => d));
  for (const alg of await readdir(files.blobsDir).catch(() => [] as string[])) {
    for (const prefix of await readdir(join(files.blobsDir, alg)).catch(() => [] as string[])) {
      for (const hex of await readdir(join(files.blobsDir, alg, prefix)).catch(() => [] as string[])) {
        const digest = `${alg}:${hex}`;
        if (known.has(digest)) continue;
        const path = join(files.blobsDir, alg, prefix, hex);
        const st = await stat(path).catch(() => undefined);
        if (!st || st.mtimeMs >= cutoff) continue;
        await unlink(path).catch(() => {});
        result.blobsRemoved++;
        result.bytesFreed += st.size;
      }
    }
  }
  return result;
}
