/**
 * Release files fetched from an upstream file host on a miss. Each path is fetched once however
 * many clients ask at the same time; a file is verified against the upstream's `.sha256`/`.sha512`
 * (when it publishes them) before it appears under its name, by rename from a temp file, so a
 * client never sees a partial or corrupt file, after any failure or crash.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { syncDir, syncFile, writeFileAtomic } from "../store/fsutil.ts";
import { checksumSuffixes, isChecksumFile } from "./content-types.ts";
import { ArtifactError } from "./errors.ts";

export interface ArtifactUpstream {
  /** Base URL; a file's URL is this plus its path. */
  url: string;
  verifyChecksums: boolean;
  /** Longest one upstream fetch may take, body included. */
  timeoutMs: number;
  /** How long an upstream "not found" is remembered. */
  negativeCacheTtlMs: number;
}

/** Checksum files are a line of hex and maybe a name; anything much larger is not one. */
const maxChecksumBytes = 64 * 1024;
/** Paths remembered as missing upstream at most; the oldest is forgotten first. */
const maxRemembered = 10_000;
const hexLength = { ".sha256": 64, ".sha512": 128 } as const;
type Algorithm = keyof typeof hexLength;

/** Temp files live under the root in a dot-directory, which the service never serves. */
export const tempDirName = ".incoming";

export class ArtifactPuller {
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly absent = new Map<string, number>();
  private readonly tmpDir: string;
  /** Upstream requests made so far (tests and logs). */
  fetches = 0;

  constructor(
    private readonly root: string,
    private readonly upstream: ArtifactUpstream,
    private readonly logger?: Logger,
  ) {
    this.tmpDir = join(root, tempDirName);
  }

  /** Removes temp files a crash left behind; nothing under a final name is touched. */
  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
  }

  /**
   * Makes the file at `segments` present locally if the upstream has it. True when it is now on
   * disk, false when the upstream has no such file; throws ArtifactError (502/504) otherwise.
   */
  ensure(segments: string[]): Promise<boolean> {
    const key = segments.join("/");
    const until = this.absent.get(key);
    if (until !== undefined) {
      if (until > Date.now()) return Promise.resolve(false);
      this.absent.delete(key);
    }
    let p = this.inflight.get(key);
    if (!p) {
      p = this.pull(segments).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async pull(segments: string[]): Promise<boolean> {
    const key = segments.join("/");
    const name = segments[segments.length - 1]!;
    const signal = AbortSignal.timeout(this.upstream.timeoutMs);
    const expected = new Map<Algorithm, { hex: string; body: Buffer }>();
    if (this.upstream.verifyChecksums && !isChecksumFile(name)) {
      const sums = await Promise.all(checksumSuffixes.map((s) => this.checksum(`${key}${s}`, s, signal)));
      for (const [i, s] of checksumSuffixes.entries()) if (sums[i]) expected.set(s, sums[i]);
    }
    const res = await this.get(key, signal);
    // A host with directory listings (nginx autoindex, Apache, a Kagami with listing on) sends
    // `release/v1.31.0` on to `release/v1.31.0/` and answers with an index page. Stored under the
    // asked-for name, that page would be a file where a directory belongs, and every release file
    // below it would fail for good; so a redirect to a directory is a miss, like a 404.
    const directory = res.status === 200 && res.redirected && new URL(res.url).pathname.endsWith("/");
    if (res.status === 404 || res.status === 410 || directory) {
      await res.body?.cancel();
      // Bounded: a stream of made-up paths must not grow memory without end.
      if (this.absent.size >= maxRemembered) this.absent.delete(this.absent.keys().next().value!);
      this.absent.set(key, Date.now() + this.upstream.negativeCacheTtlMs);
      return false;
    }
    if (res.status !== 200 || !res.body) {
      await res.body?.cancel();
      throw upstreamError(`the upstream answered ${res.status} for this file`);
    }
    const tmp = join(this.tmpDir, randomUUID());
    try {
      const hashes = { ".sha256": createHash("sha256"), ".sha512": createHash("sha512") };
      const hashing = new Transform({
        transform(chunk: Buffer, _enc, done) {
          hashes[".sha256"].update(chunk);
          hashes[".sha512"].update(chunk);
          done(null, chunk);
        },
      });
      try {
        await pipeline(Readable.fromWeb(res.body), hashing, createWriteStream(tmp, { flags: "wx" }));
      } catch (err) {
        throw signal.aborted
          ? new ArtifactError(504, "Gateway Timeout: the upstream did not send the file in time")
          : upstreamError(`the upstream transfer failed: ${(err as Error).message}`);
      }
      for (const [alg, sum] of expected) {
        const got = hashes[alg].digest("hex");
        if (got !== sum.hex) {
          this.logger?.warn(
            { path: key, algorithm: alg, expected: sum.hex, got },
            "artifact checksum mismatch",
          );
          throw upstreamError(`the file does not match the upstream's ${alg} checksum`);
        }
      }
      // The upstream's date, not the fetch's: mirrors of one file then agree on Last-Modified.
      const upstreamDate = Date.parse(res.headers.get("last-modified") ?? "");
      if (!Number.isNaN(upstreamDate)) await utimes(tmp, new Date(), new Date(upstreamDate));
      await syncFile(tmp);
      await this.place(tmp, segments);
      // The checksum files went into this decision; keep them beside the file for clients to check.
      for (const [alg, sum] of expected) await this.storeSmall(`${key}${alg}`, sum.body);
      this.logger?.info({ path: key, verified: [...expected.keys()] }, "artifact fetched from upstream");
      return true;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** The upstream's checksum for a file: undefined when it publishes none at that name. */
  private async checksum(
    path: string,
    alg: Algorithm,
    signal: AbortSignal,
  ): Promise<{ hex: string; body: Buffer } | undefined> {
    const res = await this.get(path, signal);
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel();
      return undefined;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw upstreamError(`the upstream answered ${res.status} for the file's ${alg} checksum`);
    }
    const body = Buffer.from(await res.arrayBuffer());
    const m = new RegExp(`^\\s*([0-9a-fA-F]{${hexLength[alg]}})(\\s|$)`).exec(
      body.subarray(0, maxChecksumBytes).toString("latin1"),
    );
    if (body.length > maxChecksumBytes || !m) {
      throw upstreamError(`the upstream's ${alg} file for it is not a ${alg} checksum`);
    }
    return { hex: m[1]!.toLowerCase(), body };
  }

  private async get(path: string, signal: AbortSignal): Promise<Response> {
    const url = `${this.upstream.url}/${path.split("/").map(encodeURIComponent).join("/")}`;
    this.fetches++;
    try {
      // Followed redirects (dl.k8s.io sends clients on to its CDN) never carry credentials: none are sent.
      return await fetch(url, { redirect: "follow", signal });
    } catch (err) {
      if (signal.aborted)
        throw new ArtifactError(504, "Gateway Timeout: the upstream did not answer in time");
      throw upstreamError(`the upstream could not be reached: ${(err as Error).message}`);
    }
  }

  private async storeSmall(path: string, body: Buffer): Promise<void> {
    const final = join(this.root, ...path.split("/"));
    if (!(await exists(final))) await writeFileAtomic(this.tmpDir, final, body);
  }

  private async place(tmp: string, segments: string[]): Promise<void> {
    const final = join(this.root, ...segments);
    try {
      await mkdir(dirname(final), { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EEXIST" && code !== "ENOTDIR") throw err;
      // A file stored earlier (or put there by hand) stands where the upstream has a directory.
      this.logger?.warn({ path: segments.join("/") }, "a local file stands where a directory is needed");
      throw new ArtifactError(502, "Bad Gateway: a file here has the name of a directory upstream");
    }
    await rename(tmp, final);
    await syncDir(dirname(final));
  }
}

const upstreamError = (why: string) => new ArtifactError(502, `Bad Gateway: ${why}`);

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
