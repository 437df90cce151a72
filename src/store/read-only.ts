import { dirname } from "node:path";

/**
 * The metadata database could not be opened for writing. SQLite's own words ("attempt to write a
 * readonly database", "unable to open database file") name neither the file nor why, and the
 * usual reasons are the operator's to fix: ownership of the storage directory or a read-only mount.
 */
export class StorageNotWritableError extends Error {
  constructor(
    readonly path: string,
    readonly code: string,
    cause: unknown,
  ) {
    const dir = dirname(path);
    const uid = process.getuid?.();
    super(
      `cannot write the metadata database ${path} (${code}: ${(cause as Error).message}): the storage directory ${dir} or the file is not writable by the user Kagami runs as${uid === undefined ? "" : ` (uid ${uid})`}, or it is on a read-only mount (a container volume mounted :ro, a file system remounted read-only after errors); give that user write access, mount it read-write, or point storage.rootDirectory elsewhere`,
      { cause },
    );
    this.name = "StorageNotWritableError";
  }
}

/** SQLite codes (with their extended forms) that mean "this file cannot be opened or written here". */
export function notWritableCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== "string") return undefined;
  return /^SQLITE_(READONLY|CANTOPEN|PERM)(_|$)/.test(code) || code === "EROFS" || code === "EACCES"
    ? code
    : undefined;
}
