import type { Readable } from "node:stream";
import { digestOf, parseDigest } from "../oci/digest.ts";
import type { RegistryError } from "../oci/errors.ts";
import { type Descriptor, maxManifestSize, parseManifest } from "../oci/manifest.ts";
import { baseMediaType, MediaType, manifestTypes } from "../oci/mediatypes.ts";
import { streamFromPump } from "../registry/blob-pump.ts";
import type {
  BlobContent,
  BlobPump,
  ManifestContent,
  ManifestInfo,
  Page,
  PutManifestResult,
  Registry,
  ViewSink,
} from "../registry/registry.ts";
import type { BasicCredentials, CredentialLookup } from "./credentials.ts";
import { UpstreamError } from "./errors.ts";
import {
  HttpClient,
  type HttpClientOptions,
  type HttpRequest,
  type HttpResponse,
  type RedirectHop,
  readBytes,
  readText,
  statusError,
} from "./http.ts";
import type { RawBody } from "./raw-http.ts";
import { isDockerHub } from "./reference.ts";
import {
  backoffDelay,
  defaultRetryPolicy,
  describeNetworkError,
  isTransientNetworkError,
  type RetryPolicy,
  sleep,
} from "./retry.ts";
import { loadCertDir, type TlsMaterial, withCaFile } from "./tls.ts";

export interface RemoteRegistryOptions {
  /** Base URLs of one upstream (mirrors of each other), tried in this order: `https://host[:port]`. */
  urls: string[];
  /** Verify the server's certificate (default true). */
  tlsVerify?: boolean;
  /** Docker `certs.d` style directory: `*.crt` CAs, `client.cert` + `client.key`. */
  certDir?: string;
  /** A PEM bundle of CAs to trust on top of the system's (oc's --certificate-authority). */
  caFile?: string;
  /** TLS material given directly (a CA file, a client certificate); used instead of `certDir`. */
  tls?: TlsMaterial;
  /** Fixed credentials, or a lookup by host (credentialsFile, auth.json). */
  credentials?: BasicCredentials | CredentialLookup;
  maxRetries?: number;
  /** Milliseconds every wait between attempts is made of (see `retryBackoff`). */
  retryDelay?: number;
  maxRetryDelay?: number;
  /** How waits grow (default jittered, see RetryPolicy). */
  retryBackoff?: RetryPolicy["backoff"];
  /** Longest `Retry-After` waited for (ms). */
  maxRetryAfter?: number;
  /** Milliseconds to establish a connection (TCP + TLS). */
  connectTimeout?: number;
  /** Milliseconds to wait for response headers. */
  headersTimeout?: number;
  /** Milliseconds a response body may stall (no bytes) before the transfer is abandoned. */
  bodyTimeout?: number;
  userAgent?: string;
  /** How long a base URL that failed is passed over (ms). */
  failoverCooldown?: number;
  /** Milliseconds one request may take, body included; unbounded when absent. */
  requestTimeout?: number;
  /** Requests in flight at once per URL; unbounded when absent. */
  maxConcurrentRequests?: number;
  /** Requests started per second per URL; unbounded when absent. */
  requestsPerSecond?: number;
  /** Idle connections kept per host for blob downloads (default 8). */
  maxIdleConnections?: number;
  /** What a person should change when an https:// URL on `host` turns out to serve plain HTTP. */
  plainHttpAdvice?: (host: string) => string;
  /** Treat as Docker Hub (single names get `library/`); default: from the URLs. */
  dockerHub?: boolean;
  onRetry?: (info: { url: string; attempt: number; delay: number; reason: string }) => void;
  onRedirect?: (info: RedirectHop) => void;
  onExchange?: HttpClientOptions["onExchange"];
}

const acceptManifests = manifestTypes.join(", ");

/**
 * Another registry over HTTP, as a Registry: docker's auth flow, retries, failover across mirror
 * URLs, resumable blob downloads. Manifest bytes and digests pass through untouched.
 */
export class RemoteRegistry implements Registry {
  readonly http: HttpClient;
  readonly retry: RetryPolicy;
  readonly dockerHub: boolean;
  /** Where a blob was last seen on this registry, for cross-repository mounts. */
  private readonly blobHomes = new Map<string, string>();

  constructor(opts: RemoteRegistryOptions) {
    this.retry = {
      maxRetries: opts.maxRetries ?? defaultRetryPolicy.maxRetries,
      retryDelay: opts.retryDelay ?? defaultRetryPolicy.retryDelay,
      maxRetryDelay: opts.maxRetryDelay ?? defaultRetryPolicy.maxRetryDelay,
      maxRetryAfter: opts.maxRetryAfter ?? defaultRetryPolicy.maxRetryAfter,
      backoff: opts.retryBackoff ?? defaultRetryPolicy.backoff,
    };
    let tls: TlsMaterial | undefined = opts.tls;
    if (!tls && opts.certDir) tls = loadCertDir(opts.certDir);
    if (opts.caFile) tls = withCaFile(tls, opts.caFile);
    this.dockerHub = opts.dockerHub ?? opts.urls.some((u) => isDockerHub(new URL(u).hostname));
    const httpOpts: ConstructorParameters<typeof HttpClient>[0] = {
      urls: opts.urls,
      tlsVerify: opts.tlsVerify ?? true,
      retry: this.retry,
      connectTimeout: opts.connectTimeout ?? 30_000,
      headersTimeout: opts.headersTimeout ?? 60_000,
      bodyTimeout: opts.bodyTimeout ?? 60_000,
      userAgent: opts.userAgent ?? "kagami",
      failoverCooldown: opts.failoverCooldown ?? 30_000,
    };
    if (tls) httpOpts.tls = tls;
    if (opts.credentials) httpOpts.credentials = opts.credentials;
    if (opts.onRetry) httpOpts.onRetry = opts.onRetry;
    if (opts.onRedirect) httpOpts.onRedirect = opts.onRedirect;
    if (opts.onExchange) httpOpts.onExchange = opts.onExchange;
    if (opts.requestTimeout !== undefined) httpOpts.requestTimeout = opts.requestTimeout;
    if (opts.maxConcurrentRequests !== undefined) httpOpts.maxConcurrentRequests = opts.maxConcurrentRequests;
    if (opts.requestsPerSecond !== undefined) httpOpts.requestsPerSecond = opts.requestsPerSecond;
    if (opts.maxIdleConnections !== undefined) httpOpts.maxIdleConnections = opts.maxIdleConnections;
    if (opts.plainHttpAdvice) httpOpts.plainHttpAdvice = opts.plainHttpAdvice;
    this.http = new HttpClient(httpOpts);
  }

  /** A name for messages: the first URL. */
  get name(): string {
    return this.http.urls[0]!;
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  /** Docker Hub keeps official images under `library/`. */
  repoName(repo: string): string {
    return this.dockerHub && !repo.includes("/") ? `library/${repo}` : repo;
  }

  private pull(repo: string): string[] {
    return [`repository:${repo}:pull`];
  }

  private push(repo: string): string[] {
    return [`repository:${repo}:pull,push`];
  }

  private async fail(res: HttpResponse, notFound: RegistryError["code"], what: string): Promise<never> {
    const text = await readText(res.body, 64 * 1024).catch(() => "");
    const err = statusError(res.status, text, res.url, notFound);
    throw new UpstreamError(err.code, `${what}: ${err.message}`, {
      url: err.url,
      upstreamStatus: res.status,
      retryable: err.retryable,
      detail: err.detail,
    });
  }

  private get(path: string, scopes: string[], headers: Record<string, string> = {}): Promise<HttpResponse> {
    return this.http.send({ method: "GET", path, scopes, headers, idempotent: true, followRedirects: true });
  }

  async headManifest(repo: string, reference: string): Promise<ManifestInfo | undefined> {
    const name = this.repoName(repo);
    const res = await this.http.send({
      method: "HEAD",
      path: `/v2/${name}/manifests/${reference}`,
      scopes: this.pull(name),
      headers: { accept: acceptManifests },
      idempotent: true,
      followRedirects: true,
    });
    await res.body.dump().catch(() => {});
    if (res.status === 404) return undefined;
    if (res.status !== 200) await this.fail(res, "MANIFEST_UNKNOWN", `HEAD manifest ${name}:${reference}`);
    const digest = header(res, "docker-content-digest");
    const mediaType = baseMediaType(header(res, "content-type"));
    const size = Number(header(res, "content-length"));
    if (!digest || !mediaType || !Number.isSafeInteger(size) || manifestTypes.indexOf(mediaType) < 0) {
      // Some registries leave these out of HEAD answers; a GET tells for sure.
      const m = await this.getManifest(repo, reference);
      return m && { digest: m.digest, mediaType: m.mediaType, size: m.size };
    }
    if (reference.includes(":") && digest !== reference) {
      throw new UpstreamError(
        "DIGEST_INVALID",
        `${res.url} answered with digest ${digest} for a request by digest ${reference}`,
        { url: res.url, retryable: false },
      );
    }
    return { digest, mediaType, size };
  }

  async getManifest(repo: string, reference: string): Promise<ManifestContent | undefined> {
    const name = this.repoName(repo);
    const res = await this.get(`/v2/${name}/manifests/${reference}`, this.pull(name), {
      accept: acceptManifests,
    });
    if (res.status === 404) {
      await res.body.dump().catch(() => {});
      return undefined;
    }
    if (res.status !== 200) await this.fail(res, "MANIFEST_UNKNOWN", `GET manifest ${name}:${reference}`);
    let bytes: Buffer;
    try {
      bytes = await readBytes(res.body, maxManifestSize);
    } catch (err) {
      throw new UpstreamError(
        "MANIFEST_INVALID",
        `GET manifest ${name}:${reference} from ${res.url}: ${describeNetworkError(err)}`,
        { url: res.url, retryable: isTransientNetworkError(err), cause: err },
      );
    }
    const byDigest = reference.includes(":");
    const algorithm = byDigest ? parseDigest(reference).algorithm : "sha256";
    const digest = digestOf(bytes, algorithm);
    const claimed = header(res, "docker-content-digest");
    if (byDigest && digest !== reference) {
      throw new UpstreamError(
        "DIGEST_INVALID",
        `manifest ${name}@${reference} from ${res.url} has digest ${digest}: the content is not what was asked for`,
        { url: res.url, retryable: true },
      );
    }
    if (!byDigest && claimed && claimed.startsWith("sha256:") && claimed !== digest) {
      throw new UpstreamError(
        "DIGEST_INVALID",
        `manifest ${name}:${reference} from ${res.url} has digest ${digest}, but the registry said ${claimed}`,
        { url: res.url, retryable: true },
      );
    }
    let mediaType = baseMediaType(header(res, "content-type"));
    if (manifestTypes.indexOf(mediaType) < 0) {
      mediaType = parseManifest(bytes, undefined).mediaType;
    }
    return { digest, mediaType, size: bytes.length, bytes };
  }

  async putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    contentType?: string,
  ): Promise<PutManifestResult> {
    const name = this.repoName(repo);
    const parsed = parseManifest(bytes, contentType);
    const mediaType = contentType ? baseMediaType(contentType) || parsed.mediaType : parsed.mediaType;
    const res = await this.http.send({
      method: "PUT",
      path: `/v2/${name}/manifests/${reference}`,
      scopes: this.push(name),
      headers: { "content-type": mediaType },
      body: bytes,
      idempotent: true,
    });
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) {
      await this.fail(res, "MANIFEST_INVALID", `PUT manifest ${name}:${reference}`);
    }
    await res.body.dump().catch(() => {});
    const algorithm = reference.includes(":") ? parseDigest(reference).algorithm : "sha256";
    const digest = digestOf(bytes, algorithm);
    const result: PutManifestResult = { digest };
    const subjectHeader = header(res, "oci-subject");
    if (parsed.subject) {
      result.subject = parsed.subject.digest;
      // A registry without the referrers API: keep the referrers tag schema's index up to date.
      if (!subjectHeader) {
        const d: Descriptor = { mediaType, digest, size: bytes.length };
        if (parsed.artifactType) d.artifactType = parsed.artifactType;
        if (parsed.annotations) d.annotations = parsed.annotations;
        await this.addToReferrersTag(name, parsed.subject.digest, d);
      }
    }
    return result;
  }

  private async addToReferrersTag(name: string, subject: string, desc: Descriptor): Promise<void> {
    const tag = subject.replace(":", "-");
    const existing = await this.getManifest(name, tag);
    let manifests: Descriptor[] = [];
    if (existing && existing.mediaType === MediaType.ociIndex) {
      manifests =
        (JSON.parse(existing.bytes.toString("utf8")) as { manifests?: Descriptor[] }).manifests ?? [];
    }
    if (manifests.some((m) => m.digest === desc.digest)) return;
    manifests.push(desc);
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }));
    await this.putManifest(name, tag, index, MediaType.ociIndex);
  }

  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    const name = this.repoName(repo);
    const res = await this.http.send({
      method: "HEAD",
      path: `/v2/${name}/blobs/${digest}`,
      scopes: this.pull(name),
      idempotent: true,
      followRedirects: true,
    });
    await res.body.dump().catch(() => {});
    if (res.status === 404) return undefined;
    if (res.status !== 200) await this.fail(res, "BLOB_UNKNOWN", `HEAD blob ${name}@${digest}`);
    const size = Number(header(res, "content-length"));
    if (!Number.isSafeInteger(size)) {
      throw new UpstreamError(
        "BLOB_UNKNOWN",
        `HEAD blob ${name}@${digest}: no Content-Length in the answer`,
        {
          url: res.url,
          retryable: false,
        },
      );
    }
    this.blobHomes.set(digest, name);
    return size;
  }

  /**
   * Streams a blob. A connection that drops mid-body is picked up where it stopped with a Range
   * request (up to maxRetries times); the bytes are not verified here, the caller hashes them.
   */
  async getBlob(
    repo: string,
    digest: string,
    range?: { start: number; end: number },
  ): Promise<BlobContent | undefined> {
    const name = this.repoName(repo);
    const open = async (from: number): Promise<HttpResponse | undefined> => {
      const headers: Record<string, string> = {};
      const start = (range?.start ?? 0) + from;
      if (range || from > 0) headers.range = `bytes=${start}-${range ? range.end : ""}`;
      const res = await this.http.send({
        method: "GET",
        path: `/v2/${name}/blobs/${digest}`,
        scopes: this.pull(name),
        headers,
        idempotent: true,
        followRedirects: true,
        bulk: true,
      });
      if (res.status === 404) {
        await res.body.dump().catch(() => {});
        return undefined;
      }
      if (res.status !== 200 && res.status !== 206)
        await this.fail(res, "BLOB_UNKNOWN", `GET blob ${name}@${digest}`);
      return res;
    };
    const first = await open(0);
    if (!first) return undefined;
    const length = Number(header(first, "content-length"));
    let size: number;
    if (first.status === 206) {
      const total = /\/(\d+)$/.exec(header(first, "content-range") ?? "")?.[1];
      size = Number.isSafeInteger(length) ? length : range ? range.end - range.start + 1 : Number(total);
    } else {
      size = length;
      if (range) {
        // No range support: skip to the start ourselves.
        size = range.end - range.start + 1;
      }
    }
    if (!Number.isSafeInteger(size)) size = -1;
    this.blobHomes.set(digest, name);
    let taken = false;
    const pump = (sink: ViewSink): BlobPump => {
      if (taken) throw new Error(`blob ${digest} is already being read`);
      taken = true;
      return this.resumablePump(first, range, size, open, sink);
    };
    let stream: Readable | undefined;
    return {
      size,
      pump,
      // A caller that gives up before reading must still free the connection.
      get stream() {
        stream ??= streamFromPump(pump, () => first.body.destroy());
        return stream;
      },
    };
  }

  /** Delivers a blob body to `sink`, resuming with a Range request where a connection dropped. */
  private resumablePump(
    first: HttpResponse,
    range: { start: number; end: number } | undefined,
    expected: number,
    open: (from: number) => Promise<HttpResponse | undefined>,
    sink: ViewSink,
  ): BlobPump {
    let res = first;
    let aborted: Error | undefined;
    const body = (): RawBody => res.body as RawBody;
    const run = async (): Promise<void> => {
      let got = 0;
      let resumes = 0;
      try {
        for (;;) {
          if (aborted) throw aborted;
          // Bytes to drop from the front of this response: a server that ignored our Range.
          let skip = res.status === 200 ? (range?.start ?? 0) + got : 0;
          const current = body();
          try {
            await current.pump((view) => {
              let v = view;
              if (skip > 0) {
                if (v.length <= skip) {
                  skip -= v.length;
                  return true;
                }
                v = v.subarray(skip);
                skip = 0;
              }
              const over = expected >= 0 && got + v.length > expected;
              if (over) v = v.subarray(0, expected - got);
              got += v.length;
              const more = v.length > 0 ? sink(v) : true;
              // More than was asked for (a Range ignored): the rest is not read.
              if (over) current.stop();
              return more;
            });
            if (expected >= 0 && got < expected) {
              throw Object.assign(new Error(`body ended after ${got} of ${expected} bytes`), {
                retryable: true,
              });
            }
            return;
          } catch (err) {
            current.destroy();
            if (aborted) throw aborted;
            if (!isTransientNetworkError(err) || resumes >= this.retry.maxRetries || expected < 0) {
              const failure = new UpstreamError(
                "BLOB_UNKNOWN",
                `download of ${res.url} failed after ${got} bytes: ${describeNetworkError(err)}`,
                { url: res.url, retryable: isTransientNetworkError(err), cause: err, status: 502 },
              );
              failure.retried = resumes > 0 && resumes >= this.retry.maxRetries;
              throw failure;
            }
            await sleep(backoffDelay(this.retry, resumes));
            resumes++;
            if (aborted) throw aborted;
            const next = await open(got);
            if (!next) {
              throw new UpstreamError(
                "BLOB_UNKNOWN",
                `blob disappeared from ${res.url} during the download`,
                {
                  url: res.url,
                  retryable: false,
                },
              );
            }
            res = next;
          }
        }
      } finally {
        body().destroy();
      }
    };
    return {
      done: run(),
      resume: () => body().resume(),
      abort: (err) => {
        aborted ??= err;
        body().destroy(err);
      },
    };
  }

  /**
   * Uploads a blob: POST to open a session, then one PUT with the whole body (monolithic upload).
   * The registry verifies the digest; a body that errors midway aborts the PUT and the session.
   */
  async putBlob(repo: string, digest: string, body: Readable, size?: number): Promise<void> {
    const name = this.repoName(repo);
    parseDigest(digest);
    const start = await this.http.send({
      method: "POST",
      path: `/v2/${name}/blobs/uploads/`,
      scopes: this.push(name),
      headers: { "content-length": "0" },
      idempotent: true,
    });
    if (start.status !== 202) {
      body.destroy();
      await this.fail(start, "BLOB_UPLOAD_INVALID", `start upload of ${digest} to ${name}`);
    }
    await start.body.dump().catch(() => {});
    const location = header(start, "location");
    if (!location) {
      body.destroy();
      throw new UpstreamError("BLOB_UPLOAD_INVALID", `${start.url} opened an upload without a Location`, {
        url: start.url,
        retryable: true,
      });
    }
    const url = new URL(location, start.url);
    url.searchParams.set("digest", digest);
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (size !== undefined) headers["content-length"] = String(size);
    const req: HttpRequest = {
      method: "PUT",
      path: url.href,
      origin: start.origin,
      scopes: this.push(name),
      headers,
      body,
      idempotent: false,
    };
    let res: HttpResponse;
    try {
      res = await this.http.send(req);
    } catch (err) {
      await this.cancelUpload(url, start.origin, name);
      throw err;
    }
    if (res.status !== 201) {
      await this.cancelUpload(url, start.origin, name);
      await this.fail(res, "BLOB_UPLOAD_INVALID", `upload of ${digest} to ${name}`);
    }
    await res.body.dump().catch(() => {});
    this.blobHomes.set(digest, name);
  }

  private async cancelUpload(url: URL, origin: string, name: string): Promise<void> {
    const u = new URL(url.href);
    u.searchParams.delete("digest");
    try {
      const res = await this.http.send({
        method: "DELETE",
        path: u.href,
        origin,
        scopes: this.push(name),
        idempotent: false,
      });
      await res.body.dump().catch(() => {});
    } catch {
      // best effort: the registry purges abandoned sessions anyway
    }
  }

  /**
   * Cross-repository mount: links a blob the registry already holds in `from` (or wherever this
   * client last saw it) into `repo` without a transfer. False when the registry would not.
   */
  async mountBlob(repo: string, digest: string, from?: string): Promise<boolean> {
    const name = this.repoName(repo);
    const source = from !== undefined ? this.repoName(from) : this.blobHomes.get(digest);
    if (source === undefined || source === name) return false;
    const res = await this.http.send({
      method: "POST",
      path: `/v2/${name}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(source)}`,
      scopes: [...this.push(name), ...this.pull(source)],
      headers: { "content-length": "0" },
      idempotent: true,
    });
    await res.body.dump().catch(() => {});
    if (res.status === 201) {
      this.blobHomes.set(digest, name);
      return true;
    }
    const location = header(res, "location");
    if (res.status === 202 && location) await this.cancelUpload(new URL(location, res.url), res.origin, name);
    return false;
  }

  async listTags(repo: string, page: Page = {}): Promise<string[]> {
    const name = this.repoName(repo);
    return this.paginate(`/v2/${name}/tags/list`, this.pull(name), "tags", page, "NAME_UNKNOWN");
  }

  async catalog(page: Page = {}): Promise<string[]> {
    return this.paginate("/v2/_catalog", ["registry:catalog:*"], "repositories", page, "UNSUPPORTED");
  }

  private async paginate(
    path: string,
    scopes: string[],
    field: "tags" | "repositories",
    page: Page,
    notFound: RegistryError["code"],
  ): Promise<string[]> {
    const q = new URLSearchParams();
    if (page.n !== undefined) q.set("n", String(page.n));
    if (page.last !== undefined) q.set("last", page.last);
    let next: string | undefined = q.size ? `${path}?${q}` : path;
    const out: string[] = [];
    for (let pages = 0; next && pages < 10_000; pages++) {
      const res = await this.get(next, scopes);
      if (res.status !== 200) await this.fail(res, notFound, `GET ${path}`);
      const doc = JSON.parse(await readText(res.body, 16 * 1024 * 1024)) as Record<string, unknown>;
      const items = doc[field];
      if (Array.isArray(items)) out.push(...items.filter((x): x is string => typeof x === "string"));
      if (page.n !== undefined) break;
      next = nextLink(header(res, "link"));
    }
    return out;
  }

  /** The referrers API, falling back to the referrers tag schema (`sha256-<hex>`) where it is missing. */
  async referrers(repo: string, digest: string, artifactType?: string): Promise<Descriptor[]> {
    const name = this.repoName(repo);
    const q = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : "";
    const res = await this.get(`/v2/${name}/referrers/${digest}${q}`, this.pull(name), {
      accept: MediaType.ociIndex,
    });
    let manifests: Descriptor[] | undefined;
    if (res.status === 200 && baseMediaType(header(res, "content-type")) === MediaType.ociIndex) {
      const doc = JSON.parse(await readText(res.body, maxManifestSize)) as { manifests?: Descriptor[] };
      manifests = doc.manifests ?? [];
    } else if (res.status === 404 || res.status === 200 || res.status === 405 || res.status === 400) {
      await res.body.dump().catch(() => {});
      const fallback = await this.getManifest(name, digest.replace(":", "-"));
      if (
        fallback &&
        (fallback.mediaType === MediaType.ociIndex || fallback.mediaType === MediaType.dockerList)
      ) {
        manifests =
          (JSON.parse(fallback.bytes.toString("utf8")) as { manifests?: Descriptor[] }).manifests ?? [];
      } else manifests = [];
    } else {
      await this.fail(res, "MANIFEST_UNKNOWN", `GET referrers of ${name}@${digest}`);
    }
    return (manifests ?? []).filter((m) => artifactType === undefined || m.artifactType === artifactType);
  }
}

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The `rel="next"` target of a Link header. */
export function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(",")) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (m) return m[1];
  }
  return undefined;
}
