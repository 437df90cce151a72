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
 * snapshot, so copying the blobs afterwards finds them all (unless garbage collection removes one in
 * between, which only happens to blobs unreferenced for longer than storage.gcDelay). Blobs are
 * immutable and content-addressed: one already at its path in `dest` is the same bytes and is kept,
 * which makes a repeated backup into the same directory incremental.
 */
export async function backupStore(root: string, dest: string): Promise<StoreBackupResult> {
  await mkdir(dest, { recursive: true });
  const entries = await readdir(dest);
  if (entries.some((e) => !["kagami.db", "blobs", "tmp"].includes(e)))
    throw new BackupTargetError(`${dest} holds files other than a Kagami backup; choose an empty directory`);
  const tmp = join(dest, "tmp");
  await mkdir(tmp, { recursive: true });

  const source = new Database(join(root, "kagami.db"), { readonly: true, fileMustExist: true });
  const snapshot = join(tmp, "kagami.db.partial");
  try {
    await source.backup(snapshot);
  } finally {
    source.close();
  }
  await syncFile(snapshot);
  await rename(snapshot, join(dest, "kagami.db"));
  await syncDir(dest);

  const result: StoreBackupResult = { blobsCopied: 0, blobsKept: 0, bytesCopied: 0 };
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
      // Collected since the walk listed it: nothing in the snapshot still needs it.
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
  await unlink(join(tmp, "kagami.db.partial")).catch(() => {});
  return result;
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
