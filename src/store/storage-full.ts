import { type ErrorCode, RegistryError } from "../oci/errors.ts";

/** Errno and SQLite codes that mean "no room left", whichever layer ran out first. */
const fullCodes = new Set(["ENOSPC", "EDQUOT", "SQLITE_FULL"]);

function fullCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && fullCodes.has(code)) return code;
  }
  return undefined;
}

/** Whether a failure is the disk (or the database on it) being full, not a fault of the request. */
export function isStorageFull(err: unknown): boolean {
  return fullCode(err) !== undefined;
}

/**
 * The client's answer to a full disk: 507 Insufficient Storage, naming the cause, so an operator
 * reading a push's failure knows to free space rather than to retry or to suspect the image.
 */
export function storageFullError(err: unknown, code: ErrorCode): RegistryError {
  return new RegistryError(
    code,
    `the registry's storage is full (${fullCode(err) ?? "ENOSPC"}): nothing of this request was kept; free space on the registry's disk, then retry`,
    { status: 507 },
  );
}
