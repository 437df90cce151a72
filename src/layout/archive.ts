import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { type FileHandle, mkdtemp, open, readFile, rename, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { pack as tarPack } from "tar-stream";
import { RegistryError } from "../oci/errors.ts";
import { MediaType } from "../oci/mediatypes.ts";
import { syncDir, syncFile } from "../store/fsutil.ts";
import { blobRelPath, LayoutBase, type LayoutIndex, OciLayout } from "./layout.ts";

interface TarEntry {
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

/** Lists the regular files of an uncompressed tar with their offsets, reading only the headers. */
export async function indexTar(fh: FileHandle, file: string): Promise<Map<string, TarEntry>> {
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
      longName = undefined;
      pax = {};
    }
    pos = dataStart + Math.ceil(size / block) * block;
  }
  return entries;
}

/** An `oci-archive` tar, read in place: blobs stream straight from their offsets in the file. */
export class OciArchiveReader extends LayoutBase {
  readonly description: string;
  private index: LayoutIndex | undefined;

  private constructor(
    readonly file: string,
    private readonly entries: Map<string, TarEntry>,
    /** The tar read: the file itself, or its decompressed copy. */
    private readonly tarPath: string,
    private readonly tmpDir?: string,
  ) {
    super();
    this.description = `oci-archive ${file}`;
  }

  /**
   * Opens an archive. A gzip-compressed one (`.tar.gz`, as archives are often carried) is first
   * decompressed into a temporary file under the system's temporary directory (`TMPDIR`), since
   * blobs are read from their offsets; `close()` removes it.
   */
  static async open(file: string): Promise<OciArchiveReader> {
    let fh: FileHandle;
    try {
      fh = await open(file, "r");
    } catch (err) {
      throw new RegistryError("NAME_UNKNOWN", `cannot open archive ${file}: ${(err as Error).message}`);
    }
    let tarFile = file;
    let tmpDir: string | undefined;
    let entries: Map<string, TarEntry>;
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
      entries = await indexTar(fh, file);
    } catch (err) {
      if (tmpDir) await rm(tmpDir, { recursive: true, force: true });
      throw err;
    } finally {
      await fh.close().catch(() => {});
    }
    if (!entries.has("oci-layout") || !entries.has("index.json")) {
      if (tmpDir) await rm(tmpDir, { recursive: true, force: true });
      throw new RegistryError(
        "MANIFEST_INVALID",
        `${file} is not an oci-archive: it lacks ${entries.has("oci-layout") ? "index.json" : "oci-layout"}`,
      );
    }
    return new OciArchiveReader(file, entries, tarFile, tmpDir);
  }

  /** Removes the decompressed copy of a gzip-compressed archive, if one was made. */
  async close(): Promise<void> {
    if (this.tmpDir) await rm(this.tmpDir, { recursive: true, force: true });
  }

  private async readEntry(name: string): Promise<Buffer> {
    const e = this.entries.get(name)!;
    const chunks: Buffer[] = [];
    for await (const c of createReadStream(this.tarPath, { start: e.offset, end: e.offset + e.size - 1 })) {
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks);
  }

  protected async readIndex(): Promise<LayoutIndex> {
    if (!this.index) {
      const doc = JSON.parse((await this.readEntry("index.json")).toString("utf8")) as LayoutIndex;
      if (!Array.isArray(doc.manifests)) {
        throw new RegistryError("MANIFEST_INVALID", `${this.file}: index.json has no manifests array`);
      }
      this.index = doc;
    }
    return this.index;
  }

  protected async statBlob(digest: string): Promise<number | undefined> {
    return this.entries.get(blobRelPath(digest))?.size;
  }

  protected openBlob(digest: string, range?: { start: number; end: number }): Readable {
    const e = this.entries.get(blobRelPath(digest))!;
    if (e.size === 0) return createReadStream(this.tarPath, { start: 1, end: 0 });
    const start = e.offset + (range?.start ?? 0);
    const end = e.offset + (range ? range.end : e.size - 1);
    return createReadStream(this.tarPath, { start, end });
  }
}

/**
 * Writes an `oci-archive`: images go into a layout in a temporary directory beside the file, and
 * `commit()` packs it into the tar, which appears under its name only when complete.
 */
export class OciArchiveWriter extends OciLayout {
  private constructor(
    readonly file: string,
    private readonly tmpDir: string,
    layoutDir: string,
  ) {
    super(layoutDir, `oci-archive ${file}`);
  }

  static async create(file: string): Promise<OciArchiveWriter> {
    const tmpDir = await mkdtemp(join(dirname(file), `.${basename(file)}.kagami-`));
    const layout = await OciLayout.open(join(tmpDir, "layout"), { create: true });
    return new OciArchiveWriter(file, tmpDir, layout.dir);
  }

  /** Packs the layout into the archive file (atomically) and removes the temporary directory. */
  async commit(): Promise<void> {
    const tmpFile = join(dirname(this.file), `.${basename(this.file)}.${randomUUID()}.tmp`);
    try {
      const pack = tarPack();
      const out = pipeline(pack, createWriteStream(tmpFile));
      out.catch(() => {});
      const mtime = new Date(0);
      const add = (name: string, body: Buffer) =>
        new Promise<void>((resolve, reject) =>
          pack.entry({ name, mtime, mode: 0o644 }, body, (err) => (err ? reject(err) : resolve())),
        );
      const dir = (name: string) =>
        new Promise<void>((resolve, reject) =>
          pack.entry({ name, type: "directory", mtime, mode: 0o755 }, (err) =>
            err ? reject(err) : resolve(),
          ),
        );
      await add("oci-layout", await readFile(join(this.dir, "oci-layout")));
      const indexText = await readFile(join(this.dir, "index.json")).catch(() =>
        Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] })),
      );
      await add("index.json", indexText);
      await dir("blobs/");
      const blobs = await this.blobFiles();
      for (const alg of new Set(blobs.map((b) => b.name.split("/")[1]!))) await dir(`blobs/${alg}/`);
      for (const b of blobs) {
        await new Promise<void>((resolve, reject) => {
          const entry = pack.entry({ name: b.name, size: b.size, mtime, mode: 0o644 }, (err) =>
            err ? reject(err) : resolve(),
          );
          pipeline(createReadStream(b.path), entry).catch(reject);
        });
      }
      pack.finalize();
      await out;
      await syncFile(tmpFile);
      await rename(tmpFile, this.file);
      await syncDir(dirname(this.file));
    } catch (err) {
      await unlink(tmpFile).catch(() => {});
      throw err;
    } finally {
      await rm(this.tmpDir, { recursive: true, force: true });
    }
  }

  /** Drops everything written; the archive file is not touched. */
  async discard(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
  }
}
