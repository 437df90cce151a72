import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, readFile, rename, rm, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack as tarPack } from "tar-stream";
import { RegistryError } from "../oci/errors.ts";
import { MediaType } from "../oci/mediatypes.ts";
import { syncDir, syncFile } from "../store/fsutil.ts";
import { blobRelPath, LayoutBase, type LayoutIndex, OciLayout } from "./layout.ts";
import { TarFile } from "./tar-file.ts";

/** An `oci-archive` tar, read in place: blobs stream straight from their offsets in the file. */
export class OciArchiveReader extends LayoutBase {
  readonly description: string;
  private index: LayoutIndex | undefined;

  private constructor(private readonly tar: TarFile) {
    super();
    this.description = `oci-archive ${tar.file}`;
  }

  get file(): string {
    return this.tar.file;
  }

  /** Opens an archive, plain or gzip-compressed (see TarFile). */
  static async open(file: string): Promise<OciArchiveReader> {
    return OciArchiveReader.fromTar(await TarFile.open(file));
  }

  /** Reads an opened tar as an oci-archive; it is closed when it is not one. */
  static async fromTar(tar: TarFile): Promise<OciArchiveReader> {
    if (!tar.entries.has("oci-layout") || !tar.entries.has("index.json")) {
      await tar.close();
      throw new RegistryError(
        "MANIFEST_INVALID",
        `${tar.file} is not an oci-archive: it lacks ${tar.entries.has("oci-layout") ? "index.json" : "oci-layout"}`,
      );
    }
    return new OciArchiveReader(tar);
  }

  /** Removes the decompressed copy of a gzip-compressed archive, if one was made. */
  close(): Promise<void> {
    return this.tar.close();
  }

  protected async readIndex(): Promise<LayoutIndex> {
    if (!this.index) {
      const doc = JSON.parse((await this.tar.read("index.json")).toString("utf8")) as LayoutIndex;
      if (!Array.isArray(doc.manifests)) {
        throw new RegistryError("MANIFEST_INVALID", `${this.file}: index.json has no manifests array`);
      }
      this.index = doc;
    }
    return this.index;
  }

  protected async statBlob(digest: string): Promise<number | undefined> {
    return this.tar.entries.get(blobRelPath(digest))?.size;
  }

  protected openBlob(digest: string, range?: { start: number; end: number }): Readable {
    return this.tar.stream(this.tar.entries.get(blobRelPath(digest))!, range);
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
