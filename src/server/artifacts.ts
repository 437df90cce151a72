/**
 * HTTP for the artifact file service (the dl.k8s.io role): GET and HEAD of release files with
 * validators, conditional requests and single byte ranges. Written against Node's request and
 * response so it serves both under a prefix of the registry's listener and on a listener of its
 * own. Nothing it sends names the server: no Server header, no product in any body.
 */
import { createReadStream } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import { contentTypeFor } from "../artifacts/content-types.ts";
import { ArtifactError } from "../artifacts/errors.ts";
import { type Found, openArtifact, parseArtifactPath, realRoot } from "../artifacts/files.ts";
import { renderListing } from "../artifacts/listing.ts";
import type { ArtifactPuller } from "../artifacts/pull-through.ts";
import { parseRangeHeader } from "./http-util.ts";

export interface ArtifactServiceOptions {
  root: string;
  /** Served below this path ("" on a listener of its own, else e.g. "/artifacts"). */
  prefix: string;
  listing: boolean;
  puller?: ArtifactPuller;
  /**
   * Where to send the client instead of serving the file (a copy near it), or undefined to serve
   * it here. The redirect rules plug in here; only file requests ask, never listings. `path` is
   * the decoded file path below the prefix (`release/v1.31.0/bin/linux/amd64/kubectl`), already
   * checked; `clientIp` is the socket's peer address.
   */
  redirectFor?: (
    path: string,
    peer: string | undefined,
    forwardedFor: string | undefined,
  ) => Promise<string | undefined>;
  logger: Logger;
}

export type ArtifactHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** Whether a request path is the service's (the prefix itself or below it). */
export function underPrefix(path: string, prefix: string): boolean {
  return prefix === "" || path === prefix || path.startsWith(`${prefix}/`);
}

export async function artifactHandler(opts: ArtifactServiceOptions): Promise<ArtifactHandler> {
  const root = await realRoot(opts.root);
  return async (req, res) => {
    try {
      await respond(opts, root, req, res);
    } catch (err) {
      if (!(err instanceof ArtifactError))
        opts.logger.error({ err, url: req.url }, "artifact request failed");
      const e = err instanceof ArtifactError ? err : new ArtifactError(500, "Internal Server Error");
      if (res.headersSent) res.destroy();
      else sendText(res, req, e.status, e.message, e.status === 405 ? { Allow: "GET, HEAD" } : {});
    }
  };
}

async function respond(
  opts: ArtifactServiceOptions,
  root: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") throw new ArtifactError(405, "Method Not Allowed");
  const rawPath = (req.url ?? "/").split("?")[0]!;
  // An absolute-form target (`GET http://host/x`) is a proxy request, which this is not.
  if (!rawPath.startsWith("/") || !underPrefix(rawPath, opts.prefix)) {
    throw new ArtifactError(400, "Bad Request: the request target is not a path");
  }
  const below = rawPath.slice(opts.prefix.length);
  if (below === "") {
    // The prefix itself: as a web server does for a directory named without its slash.
    if (!opts.listing) throw new ArtifactError(404, "Not Found");
    return redirect(res, 301, `${rawPath}/`);
  }
  const path = parseArtifactPath(below);
  const file = path.segments.join("/");
  if (!path.trailingSlash && path.segments.length > 0 && opts.redirectFor) {
    const forwarded = req.headers["x-forwarded-for"];
    const to = await opts.redirectFor(
      file,
      req.socket.remoteAddress,
      Array.isArray(forwarded) ? forwarded.join(",") : forwarded,
    );
    if (to !== undefined) return redirect(res, 307, to);
  }
  let found = await openArtifact(root, path.segments);
  if (found.kind === "missing" && opts.puller && !path.trailingSlash && path.segments.length > 0) {
    if (await opts.puller.ensure(path.segments)) found = await openArtifact(root, path.segments);
  }
  if (found.kind === "missing") throw new ArtifactError(404, "Not Found");
  if (found.kind === "dir") {
    if (!opts.listing) throw new ArtifactError(404, "Not Found");
    if (!path.trailingSlash) return redirect(res, 301, `${rawPath}/`);
    const html = await renderListing(found.path, decodeURI(rawPath));
    sendText(res, req, 200, html, { "Content-Type": "text/html; charset=utf-8" });
    return;
  }
  try {
    if (path.trailingSlash) throw new ArtifactError(404, "Not Found");
    await sendFile(req, res, found);
  } finally {
    await found.handle.close().catch(() => {});
  }
}

async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: Extract<Found, { kind: "file" }>,
): Promise<void> {
  const { size, mtime } = file.stats;
  const etag = `"${size.toString(16)}-${Math.floor(file.stats.mtimeMs).toString(16)}"`;
  const lastModified = mtime.toUTCString();
  res.setHeader("ETag", etag);
  res.setHeader("Last-Modified", lastModified);
  res.setHeader("Accept-Ranges", "bytes");
  res.setHeader("X-Content-Type-Options", "nosniff");
  if (notModified(req, etag, mtime)) {
    res.statusCode = 304;
    res.end();
    return;
  }
  res.setHeader("Content-Type", contentTypeFor(file.name));
  const ifRange = req.headers["if-range"];
  // A Range whose If-Range no longer names this version gets the whole file, as RFC 9110 asks.
  const rangeApplies = ifRange === undefined || ifRange === etag || ifRange === lastModified;
  const want = parseRangeHeader(rangeApplies ? req.headers.range : undefined, size);
  if (want.kind === "unsatisfiable") {
    res.setHeader("Content-Range", `bytes */${size}`);
    throw new ArtifactError(416, "Range Not Satisfiable");
  }
  let start = 0;
  let end = size - 1;
  if (want.kind === "range") {
    ({ start, end } = want.range);
    res.statusCode = 206;
    res.setHeader("Content-Range", `bytes ${start}-${end}/${size}`);
  } else {
    res.statusCode = 200;
  }
  res.setHeader("Content-Length", end - start + 1);
  if (req.method === "HEAD" || size === 0) {
    res.end();
    return;
  }
  // Streams from the open handle in bounded chunks: memory stays flat whatever the file's size.
  const body = createReadStream("", { fd: file.handle, start, end, autoClose: false });
  await pipeline(body, res).catch((err: NodeJS.ErrnoException) => {
    // A client that went away mid-file is routine, not a server fault.
    if (err.code !== "ERR_STREAM_PREMATURE_CLOSE" && !res.destroyed) throw err;
  });
}

/** RFC 9110: If-None-Match decides when present; If-Modified-Since only without it. */
function notModified(req: IncomingMessage, etag: string, mtime: Date): boolean {
  const inm = req.headers["if-none-match"];
  if (inm !== undefined) {
    return inm
      .split(",")
      .map((t) => t.trim().replace(/^W\//, ""))
      .some((t) => t === "*" || t === etag);
  }
  const ims = req.headers["if-modified-since"];
  if (ims === undefined) return false;
  const since = Date.parse(ims);
  return !Number.isNaN(since) && Math.floor(mtime.getTime() / 1000) * 1000 <= since;
}

function redirect(res: ServerResponse, status: 301 | 307, location: string): void {
  res.statusCode = status;
  res.setHeader("Location", location);
  res.setHeader("Content-Length", 0);
  res.end();
}

function sendText(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  text: string,
  headers: Record<string, string>,
): void {
  const body = Buffer.from(status >= 400 ? `${text}\n` : text);
  res.statusCode = status;
  res.setHeader("Content-Type", "text/plain; charset=utf-8");
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader("Content-Length", body.length);
  res.end(req.method === "HEAD" ? undefined : body);
}
