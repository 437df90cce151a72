import { createReadStream, createWriteStream } from "node:fs";
import { type FileHandle, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { RegistryError } from "../oci/errors.ts";

export interface TarEntry {
  offset: number;
  size: number;
}

const block = 512;

function cString(buf: Buffer, start: number, len: number): string {
  const slice = buf.subarray(start, start + len);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul < 0 ? len : nul).toString("utf8");
}

function tarNumber(buf: Buffer, start: number, len: number): number {
  const field = buf.subarray(start, start + len);
  if (field[0]! & 0x80) {
    // GNU base-256 for sizes past 8 GiB
    let v = 0;
    for (let i = 1; i < len; i++) v = v * 256 + field[i]!;
    return v;
  }
  const s = cString(buf, start, len).trim();
  return s === "" ? 0 : Number.parseInt(s, 8);
}

function parsePax(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(" ", i);
    if (sp < 0) break;
    const len = Number(text.slice(i, sp));
    if (!Number.isFinite(len) || len <= 0) break;
    const record = text.slice(sp + 1, i + len - 1);
    const eq = record.indexOf("=");
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    i += len;
  }
  return out;
}

function normalizePath(p: string): string {
  return p
    .replace(/^(\.\/)+/, "")
    .replace(/^\/+/, "")
    .replace(/\/+$/, "");
}

/**
 * Lists the regular files of an uncompressed tar with their offsets, reading only the headers.
 * Hard and symbolic links go into `links` as the path they point to (docker save links a layer
 * two images share instead of writing it twice).
 */
export async function indexTar(
  fh: FileHandle,
  file: string,
  links?: Map<string, string>,
): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  const header = Buffer.alloc(block);
  const { size: fileSize } = await fh.stat();
  let pos = 0;
  let longName: string | undefined;
  let pax: Record<string, string> = {};
  const readData = async (offset: number, size: number): Promise<Buffer> => {
    if (size > 1024 * 1024) throw new Error(`${file}: tar metadata entry of ${size} bytes`);
    const b = Buffer.alloc(size);
    await fh.read(b, 0, size, offset);
    return b;
  };
  while (pos + block <= fileSize) {
    const { bytesRead } = await fh.read(header, 0, block, pos);
    if (bytesRead < block) break;
    if (header.every((b) => b === 0)) break;
    const sum = tarNumber(header, 148, 8);
    let check = 0;
    for (let i = 0; i < block; i++) check += i >= 148 && i < 156 ? 32 : header[i]!;
    if (sum !== check) {
      throw new RegistryError(
        "MANIFEST_INVALID",
        `${file} is not a tar archive (bad header checksum at ${pos})`,
      );
    }
    const type = String.fromCharCode(header[156]!);
    let size = tarNumber(header, 124, 12);
    const dataStart = pos + block;
    if (type === "x") {
      pax = parsePax((await readData(dataStart, size)).toString("utf8"));
    } else if (type === "L") {
      longName = cString(await readData(dataStart, size), 0, size);
    } else if (type === "g" || type === "K") {
      // global headers and long link names do not concern us
    } else {
      let name = cString(header, 0, 100);
      const magic = cString(header, 257, 6);
      const prefix = magic.startsWith("ustar") ? cString(header, 345, 155) : "";
      if (prefix) name = `${prefix}/${name}`;
      if (longName !== undefined) name = longName;
      if (pax.path !== undefined) name = pax.path;
      if (pax.size !== undefined) size = Number(pax.size);
      if (type === "0" || type === "\0" || type === "7")
        entries.set(normalizePath(name), { offset: dataStart, size });
      else if (links && (type === "1" || type === "2")) {
        const target = pax.linkpath ?? cString(header, 157, 100);
        // a symlink is relative to its own directory, a hard link names an archive path
        const resolved =
          type === "2" && !target.startsWith("/") ? posix.join(posix.dirname(name), target) : target;
        links.set(normalizePath(name), normalizePath(posix.normalize(resolved)));
      }
      longName = undefined;
      pax = {};
    }
    pos = dataStart + Math.ceil(size / block) * block;
  }
  return entries;
}

/**
 * A tar file read in place: entries stream straight from their offsets. A gzip-compressed one
 * (`.tar.gz`, as archives are often carried) is first decompressed into a temporary file under the
 * system's temporary directory (`TMPDIR`), since entries are read from their offsets; `close()`
 * removes it.
 */
export class TarFile {
  private constructor(
    readonly file: string,
    readonly entries: Map<string, TarEntry>,
    private readonly links: Map<string, string>,
    /** The tar read: the file itself, or its decompressed copy. */
    private readonly tarPath: string,
    private readonly tmpDir?: string,
  ) {}

  static async open(file: string): Promise<TarFile> {
    let fh: FileHandle;
    try {
      fh = await open(file, "r");
    } catch (err) {
      throw new RegistryError("NAME_UNKNOWN", `cannot open archive ${file}: ${(err as Error).message}`);
    }
    let tarFile = file;
    let tmpDir: string | undefined;
    const links = new Map<string, string>();
    try {
      const magic = Buffer.alloc(2);
      await fh.read(magic, 0, 2, 0);
      if (magic[0] === 0x1f && magic[1] === 0x8b) {
        await fh.close();
        tmpDir = await mkdtemp(join(tmpdir(), "kagami-archive-"));
        tarFile = join(tmpDir, "archive.tar");
        try {
          await pipeline(createReadStream(file), createGunzip(), createWriteStream(tarFile));
        } catch (err) {
          throw new RegistryError(
            "MANIFEST_INVALID",
            `${file} looks gzip-compressed but could not be decompressed into ${tmpDir}: ${(err as Error).message}`,
          );
        }
        fh = await open(tarFile, "r");
      }
      const entries = await indexTar(fh, file, links);
      return new TarFile(file, entries, links, tarFile, tmpDir);
    } catch (err) {
      if (tmpDir) await rm(tmpDir, { recursive: true, force: true });
      throw err;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** Removes the decompressed copy of a gzip-compressed archive, if one was made. */
  async close(): Promise<void> {
    if (this.tmpDir) await rm(this.tmpDir, { recursive: true, force: true });
  }

  /** The regular file at `name`, following links (a few hops: a loop is not a file). */
  entry(name: string): TarEntry | undefined {
    let path = normalizePath(name);
    for (let hop = 0; hop < 8; hop++) {
      const e = this.entries.get(path);
      if (e) return e;
      const next = this.links.get(path);
      if (next === undefined) return undefined;
      path = next;
    }
    return undefined;
  }

  /** A small entry's bytes (metadata files: index.json, manifest.json, configs). */
  async read(name: string, maxBytes = 16 * 1024 * 1024): Promise<Buffer> {
    const e = this.entry(name);
    if (!e) throw new RegistryError("MANIFEST_INVALID", `${this.file} has no ${name}`);
    if (e.size > maxBytes) {
      throw new RegistryError(
        "MANIFEST_INVALID",
        `${this.file}: ${name} is ${e.size} bytes, over ${maxBytes}`,
      );
    }
    const chunks: Buffer[] = [];
    for await (const c of this.stream(e)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** An entry's bytes, or the inclusive `range` of them. */
  stream(e: TarEntry, range?: { start: number; end: number }): Readable {
    if (e.size === 0) return createReadStream(this.tarPath, { start: 1, end: 0 });
    const start = e.offset + (range?.start ?? 0);
    const end = e.offset + (range ? range.end : e.size - 1);
    return createReadStream(this.tarPath, { start, end });
  }
}
