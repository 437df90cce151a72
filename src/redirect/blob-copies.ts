/**
 * Copies of the blobs elsewhere (a bucket, a CDN, another registry): where in a copy a blob lives,
 * and whether the copy has it. A client is sent to a copy only after a HEAD there said 200, so a
 * copy that lags behind costs a redirect to the origin, never a failed pull.
 */
import { request } from "undici";
import { parseDigest } from "../oci/digest.ts";

/** archeio's layout (GCR's bucket layout): `containers/images/sha256:…`. */
export const archeioLayout = "containers/images/{digest}";

/** Named layouts; anything else is a template. */
export const layoutPresets: Record<string, string> = {
  archeio: archeioLayout,
  /** A registry serving its blobs anonymously (another Kagami, distribution). */
  registry: "v2/{repository}/blobs/{digest}",
};

const placeholders = /\{(digest|algorithm|encoded|repository)\}/g;

/** Why a layout cannot be used, or undefined. It must name the blob: `{digest}` or `{encoded}`. */
export function layoutProblem(layout: string): string | undefined {
  const template = layoutPresets[layout] ?? layout;
  const unknown = template.replace(placeholders, "").match(/\{[^}]*\}/);
  if (unknown) return `unknown placeholder ${unknown[0]}; use {digest}, {algorithm}, {encoded}, {repository}`;
  if (!/\{(digest|encoded)\}/.test(template)) return "must contain {digest} or {encoded}";
  if (/^\/|:\/\//.test(template)) return "must be a relative path under baseUrl";
  return undefined;
}

/** `<base>/<layout path>` of a blob; `digest` must be valid (it is checked again here). */
export function blobCopyUrl(baseUrl: string, layout: string, digest: string, repository: string): string {
  const d = parseDigest(digest);
  const template = layoutPresets[layout] ?? layout;
  const path = template.replace(placeholders, (_, name: string) =>
    name === "digest"
      ? d.digest
      : name === "algorithm"
        ? d.algorithm
        : name === "encoded"
          ? d.hex
          : repository,
  );
  return `${baseUrl.replace(/\/+$/, "")}/${path}`;
}

export interface BlobCheckOptions {
  /** Longest a HEAD may take; a slow copy counts as not having the blob. */
  timeoutMs: number;
  /** How long a "the copy has it" answer is believed. "Not there" is never cached: copies fill up. */
  cacheTtlMs: number;
  /** At most this many positive answers are remembered. */
  maxEntries?: number;
}

/** Whether a copy holds a blob: a HEAD with a short timeout, positive answers cached, one check per URL at a time. */
export class BlobCopyChecker {
  private readonly known = new Map<string, number>();
  private readonly pending = new Map<string, Promise<boolean>>();

  constructor(
    private readonly opts: BlobCheckOptions,
    private readonly onError?: (url: string, err: unknown) => void,
  ) {}

  has(url: string): Promise<boolean> {
    const until = this.known.get(url);
    if (until !== undefined) {
      if (until > Date.now()) return Promise.resolve(true);
      this.known.delete(url);
    }
    let p = this.pending.get(url);
    if (!p) {
      p = this.check(url).finally(() => this.pending.delete(url));
      this.pending.set(url, p);
    }
    return p;
  }

  private async check(url: string): Promise<boolean> {
    try {
      // No credentials and no client headers go to a copy; redirects are not followed (a copy
      // that moves the blob elsewhere is not one we send clients to).
      const res = await request(url, {
        method: "HEAD",
        signal: AbortSignal.timeout(this.opts.timeoutMs),
        headersTimeout: this.opts.timeoutMs,
      });
      await res.body.dump();
      if (res.statusCode !== 200) return false;
    } catch (err) {
      this.onError?.(url, err);
      return false;
    }
    const max = this.opts.maxEntries ?? 100_000;
    if (this.known.size >= max) {
      const oldest = this.known.keys().next().value;
      if (oldest !== undefined) this.known.delete(oldest);
    }
    this.known.set(url, Date.now() + this.opts.cacheTtlMs);
    return true;
  }
}
