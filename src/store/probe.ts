import { randomUUID } from "node:crypto";
import { closeSync, constants, openSync, readSync } from "node:fs";
import { access, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type Database from "better-sqlite3";

/**
 * One readiness check's answer: `reason` is a short code fit for anyone to see (EROFS,
 * SQLITE_NOTADB); `error` says what failed in words, paths included, for the operator's log.
 */
export interface ProbeResult {
  name: string;
  ok: boolean;
  reason?: string;
  error?: string;
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /^[A-Z0-9_]{2,40}$/.test(code) ? code : "failed";
}

/**
 * Whether the storage directory takes writes now: a small file written, synced and removed, in the
 * root (the database's -wal and -shm) and in `tmp/` (where uploads and fetches land), and write
 * permission on `blobs/` and `blobs/sha256/` (where they are renamed to). A disk remounted read-only
 * after errors, a full one, or a restore that left `blobs/` owned by another user fails here before
 * a push finds out.
 */
export async function probeWritable(root: string): Promise<ProbeResult> {
  let where = root;
  const paths: string[] = [];
  try {
    for (const dir of [root, join(root, "tmp")]) {
      where = dir;
      const path = join(dir, `.kagami-probe-${randomUUID()}`);
      paths.push(path);
      await writeFile(path, "ok", { flush: true });
      await rm(path, { force: true });
    }
    for (const dir of [join(root, "blobs"), join(root, "blobs", "sha256")]) {
      where = dir;
      try {
        await access(dir, constants.W_OK);
      } catch (err) {
        // Not made yet (no blob pushed): its parent was just found writable.
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    return { name: "storage", ok: true };
  } catch (err) {
    for (const path of paths) await rm(path, { force: true }).catch(() => {});
    return {
      name: "storage",
      ok: false,
      reason: codeOf(err),
      error: `cannot write to the storage directory ${where}: ${(err as Error).message}`,
    };
  }
}

const sqliteMagic = Buffer.from("SQLite format 3\0", "latin1");

/** A database file that is there and readable but is not SQLite's (overwritten, truncated). */
class NotADatabaseError extends Error {
  readonly code = "SQLITE_NOTADB";
}

/**
 * Whether the metadata database answers: a query on the connection in use, and a read of the
 * file's header, which finds a file removed, replaced or made unreadable under the running server
 * (the open connection would go on answering from its cache and the write-ahead log).
 */
export function probeDatabase(path: string, live: Database.Database): ProbeResult {
  let fd: number | undefined;
  try {
    live.prepare("SELECT COUNT(*) FROM repos").pluck().get();
    fd = openSync(path, "r");
    const header = Buffer.alloc(sqliteMagic.length);
    readSync(fd, header, 0, header.length, 0);
    if (!header.equals(sqliteMagic))
      throw new NotADatabaseError("the file does not start with SQLite's header");
    return { name: "metadata", ok: true };
  } catch (err) {
    return {
      name: "metadata",
      ok: false,
      reason: codeOf(err),
      error: `the metadata database ${path} does not answer (${codeOf(err)}): ${(err as Error).message}`,
    };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
