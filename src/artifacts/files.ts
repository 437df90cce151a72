/**
 * Where a request path lands under the artifacts root, or why it lands nowhere. A path is taken
 * apart into segments before anything touches the disk, so `..`, encoded slashes and NUL never
 * reach a file name; a symlink is followed only when its target stays inside the root.
 */
import { constants, type Stats } from "node:fs";
import { type FileHandle, open, realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import { ArtifactError, notFound } from "./errors.ts";

/**
 * The longest file name and path a POSIX file system takes (NAME_MAX, PATH_MAX). A longer one
 * cannot name a file here, so it is a 404, as nginx answers it, rather than an ENAMETOOLONG
 * escaping as a 500 and an error in the log for each such request.
 */
const maxNameBytes = 255;
const maxPathBytes = 4095;

export interface ArtifactPath {
  /** Decoded segments, each a plain file name. */
  segments: string[];
  /** The request ended in `/` (a directory asked for as one). */
  trailingSlash: boolean;
}

/**
 * Splits the raw (still percent-encoded) path below the service's prefix. Segments starting with
 * a dot are never served: they hide the store's own temp files and any `.git` or `.htpasswd`
 * that might sit in a directory put there by hand.
 */
export function parseArtifactPath(raw: string): ArtifactPath {
  if (!raw.startsWith("/")) raw = `/${raw}`;
  // Encoded separators would let one segment name a path; nothing a release tree holds needs them.
  if (/%(2f|5c|00)/i.test(raw) || raw.includes("\\") || raw.includes("\0")) {
    throw new ArtifactError(400, "Bad Request: the path holds an encoded separator or NUL");
  }
  const parts = raw.slice(1).split("/");
  const trailingSlash = parts.length > 0 && parts[parts.length - 1] === "";
  if (trailingSlash) parts.pop();
  const segments: string[] = [];
  if (Buffer.byteLength(raw) > maxPathBytes) throw notFound();
  for (const part of parts) {
    let seg: string;
    try {
      seg = decodeURIComponent(part);
    } catch {
      throw new ArtifactError(400, "Bad Request: the path is not valid percent-encoded UTF-8");
    }
    if (seg === "" || seg === "." || seg === "..") {
      throw new ArtifactError(400, "Bad Request: empty, '.' and '..' path segments are not allowed");
    }
    if (seg.includes("\0")) throw new ArtifactError(400, "Bad Request: the path holds NUL");
    if (seg.startsWith(".") || Buffer.byteLength(seg) > maxNameBytes) throw notFound();
    segments.push(seg);
  }
  return { segments, trailingSlash };
}

export type Found =
  | { kind: "file"; handle: FileHandle; stats: Stats; name: string }
  | { kind: "dir"; path: string }
  | { kind: "missing" };

/** The real path of the root, resolved once: every target must be under it. */
export async function realRoot(root: string): Promise<string> {
  return realpath(root);
}

/** Opens what `segments` name under `root` (a real path), refusing anything that resolves outside it. */
export async function openArtifact(root: string, segments: string[]): Promise<Found> {
  let real: string;
  try {
    real = await realpath(join(root, ...segments));
  } catch (err) {
    if (isMissing(err)) return { kind: "missing" };
    throw err;
  }
  if (real !== root && !real.startsWith(root + sep)) return { kind: "missing" };
  const st = await stat(real);
  if (st.isDirectory()) return { kind: "dir", path: real };
  if (!st.isFile()) return { kind: "missing" };
  let handle: FileHandle;
  try {
    // O_NOFOLLOW: a link swapped in after realpath is refused rather than followed out of the root.
    handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isMissing(err) || (err as NodeJS.ErrnoException).code === "ELOOP") return { kind: "missing" };
    throw err;
  }
  const stats = await handle.stat();
  if (!stats.isFile()) {
    await handle.close();
    return { kind: "missing" };
  }
  return { kind: "file", handle, stats, name: segments[segments.length - 1] ?? "" };
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  // ENAMETOOLONG: the root's own path plus a request's can still pass PATH_MAX.
  return code === "ENOENT" || code === "ENOTDIR" || code === "ENAMETOOLONG";
}
