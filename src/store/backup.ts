import { copyFile, mkdir, readdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import { isNotFound, syncDir, syncFile } from "./fsutil.ts";

export interface StoreBackupResult {
  /** Blobs copied in this run; those already in the destination are skipped. */
  blobsCopied: number;
  blobsKept: number;
  bytesCopied: number;
}

/** The destination exists but is not a backup of this layout (a typo would otherwise fill / or /etc). */
export class BackupTargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackupTargetError";
  }
}

/**
 * Backs up one store (a rootDirectory) into `dest`, which then has the store's own layout, so a
 * restore is copying it back. Safe beside a running server. Metadata first: SQLite's online backup
 * gives a consistent snapshot of the database, and every blob it references was durable before the
 * snapshot, so copying the blobs afterwards finds them all, unless the cache quota evicts an image in
 * between: the copy is then checked against the snapshot and, short of a blob, taken again. Blobs are
 * immutable and content-addressed: one already at its path in `dest` is the same bytes and is kept,
 * which makes a repeated backup into the same directory incremental.
 */
export async function backupStore(
  root: string,
  dest: string,
  hooks: BackupHooks = {},
): Promise<StoreBackupResult> {
  await mkdir(dest, { recursive: true });
  const entries = await readdir(dest);
  if (entries.some((e) => !["kagami.db", "blobs", "tmp"].includes(e)))
    throw new BackupTargetError(`${dest} holds files other than a Kagami backup; choose an empty directory`);
  const tmp = join(dest, "tmp");
  await mkdir(tmp, { recursive: true });

  const result: StoreBackupResult = { blobsCopied: 0, blobsKept: 0, bytesCopied: 0 };
  // The cache quota deletes an evicted image's blobs at once, not after gcDelay: one evicted between
  // the snapshot and the copy leaves the snapshot naming a blob the walk no longer finds. A new
  // snapshot no longer names it, and the blobs copied so far stay, so the next attempt is short.
  for (let attempt = 1; ; attempt++) {
    const snapshot = join(tmp, "kagami.db.partial");
    const source = new Database(join(root, "kagami.db"), { readonly: true, fileMustExist: true });
    try {
      await source.backup(snapshot);
    } finally {
      source.close();
    }
    await hooks.afterSnapshot?.();
    await copyBlobs(root, dest, tmp, result);
    const missing = await missingBlobs(snapshot, dest);
    if (missing.length === 0) {
      await syncFile(snapshot);
      await rename(snapshot, join(dest, "kagami.db"));
      await syncDir(dest);
      return result;
    }
    await unlink(snapshot).catch(() => {});
    if (attempt >= maxAttempts)
      throw new BackupInconsistentError(
        `${root}: ${missing.length} blobs the metadata names (${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ", ..." : ""}) ` +
          `were deleted while the backup ran, ${maxAttempts} times over; the destination keeps its previous kagami.db. ` +
          "Run the backup again when the cache quota is not evicting (or set cacheQuota.dryRun meanwhile).",
      );
  }
}

const maxAttempts = 5;

/** Test seams: run between the metadata snapshot and the blob copy. */
export interface BackupHooks {
  afterSnapshot?: () => Promise<void>;
}

/** The blobs kept deleting under the backup: its metadata would name content it does not hold. */
export class BackupInconsistentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackupInconsistentError";
  }
}

/**
 * Blobs a manifest of the snapshot needs that are not in the destination. A blob row nothing
 * references may be collected between snapshot and copy (gc); the restored server collects the
 * row in turn, so only referenced ones count.
 */
async function missingBlobs(snapshot: string, dest: string): Promise<string[]> {
  const db = new Database(snapshot, { readonly: true, fileMustExist: true });
  let needed: string[];
  try {
    needed = db
      .prepare(
        `SELECT digest FROM manifests UNION SELECT child FROM manifest_refs
           INTERSECT SELECT digest FROM blobs`,
      )
      .pluck()
      .all() as string[];
  } finally {
    db.close();
  }
  const missing: string[] = [];
  for (const digest of needed) {
    const [alg, hex] = digest.split(":") as [string, string];
    if (!(await exists(join(dest, "blobs", alg, hex.slice(0, 2), hex)))) missing.push(digest);
  }
  return missing;
}

async function copyBlobs(root: string, dest: string, tmp: string, result: StoreBackupResult): Promise<void> {
  for await (const rel of blobFiles(join(root, "blobs"))) {
    const target = join(dest, "blobs", rel);
    if (await exists(target)) {
      result.blobsKept++;
      continue;
    }
    const from = join(root, "blobs", rel);
    const partial = join(tmp, `${rel.replaceAll("/", "-")}.partial`);
    try {
      await copyFile(from, partial);
    } catch (err) {
      // Collected since the walk listed it: the check after the copy finds whether that mattered.
      if (isNotFound(err)) continue;
      throw err;
    }
    await syncFile(partial);
    const dir = join(target, "..");
    await mkdir(dir, { recursive: true });
    await rename(partial, target);
    await syncDir(dir);
    result.blobsCopied++;
    result.bytesCopied += (await stat(target)).size;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** `<alg>/<2 hex>/<hex>` of every blob file under `blobsDir`. */
async function* blobFiles(blobsDir: string): AsyncGenerator<string> {
  const list = async (dir: string) => {
    try {
      return await readdir(dir);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  };
  for (const alg of await list(blobsDir))
    for (const prefix of await list(join(blobsDir, alg)))
      for (const hex of await list(join(blobsDir, alg, prefix))) yield `${alg}/${prefix}/${hex}`;
}
