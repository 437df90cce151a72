import type { Readable } from "node:stream";
import { Agent, request } from "undici";
import type { UpstreamExchange } from "../metrics/sink.ts";
import type { ErrorCode } from "../oci/errors.ts";
import { type Challenge, parseChallenges } from "./challenge.ts";
import type { BasicCredentials, CredentialLookup } from "./credentials.ts";
import { parseErrorBody, UpstreamError } from "./errors.ts";
import { RequestLimiter } from "./limits.ts";
import { RawAgent, RawBody } from "./raw-http.ts";
import {
  backoffDelay,
  describeNetworkError,
  isPlainHttpAnswer,
  isRetryableStatus,
  isTransientNetworkError,
  parseRetryAfter,
  type RetryPolicy,
  sleep,
} from "./retry.ts";
import type { TlsMaterial } from "./tls.ts";

/** undici's body, or RawBody for a bulk GET: a Readable that can be drained to free the connection. */
export type ResponseBody = Readable & { dump(): Promise<unknown> };

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody;
  /** The URL that answered (after redirects). */
  url: string;
  /** The base URL (one of `urls`) the request went to. */
  origin: string;
}

export interface HttpRequest {
  method: "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE";
  /** Path and query below the base URL (`/v2/...`), or an absolute URL on one of the bases (upload locations). */
  path: string;
  headers?: Record<string, string>;
  /** A Buffer or string can be sent again; a stream only once (no retry, no auth round trip). */
  body?: Buffer | string | Readable;
  /** Token scopes this request needs, e.g. `repository:foo/bar:pull`. */
  scopes: string[];
  /** Safe to send again after a failure (GET, HEAD, PUT of a manifest, POST that starts an upload). */
  idempotent: boolean;
  /** Base URL to use, skipping failover (the continuation of an upload session). */
  origin?: string;
  signal?: AbortSignal;
  /** Follow redirects (GET/HEAD): blob downloads are often sent to a CDN. */
  followRedirects?: boolean;
  /** A GET of blob bytes: read by the RawAgent, whose RawBody can hand them on without copies. */
  bulk?: boolean;
}

export interface HttpClientOptions {
  urls: string[];
  tlsVerify: boolean;
  tls?: TlsMaterial;
  credentials?: BasicCredentials | CredentialLookup;
  retry: RetryPolicy;
  connectTimeout: number;
  headersTimeout: number;
  bodyTimeout: number;
  userAgent: string;
  /** How long a base URL that failed is passed over before it is tried first again. */
  failoverCooldown: number;
  /** Longest one exchange may take, body included (zot's syncTimeout); a retry starts anew. */
  requestTimeout?: number;
  /** Requests in flight at once per base URL (zot's reqConcurrent); a body being read counts. */
  maxConcurrentRequests?: number;
  /** Requests started per second per base URL (zot's reqPerSec). */
  requestsPerSecond?: number;
  /** Idle connections kept per host for blob downloads (zot's maxIdleConnsPerHost). */
  maxIdleConnections?: number;
  /** What a person should change when an https:// URL on `host` turns out to serve plain HTTP. */
  plainHttpAdvice?: (host: string) => string;
  onRetry?: (info: { url: string; attempt: number; delay: number; reason: string }) => void;
  /** Told of every exchange with the upstream (each attempt, token requests aside), for metrics. */
  onExchange?: (e: UpstreamExchange) => void;
  /** Hears every redirect followed, so a caller can tell where content was really served from. */
  onRedirect?: (info: RedirectHop) => void;
}

/** One redirect followed: `request` is the URL first asked for, `from` the one that answered `status`. */
export interface RedirectHop {
  method: string;
  request: string;
  from: string;
  to: string;
  status: number;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

const maxRedirects = 5;

/**
 * HTTP to one upstream with several base URLs: docker's auth challenge flow (anonymous first, then
 * Basic or a Bearer token per scope, cached until it expires), failover across the URLs in the order
 * written, retries with backoff for what is safe to send again, and redirects.
 */
export class HttpClient {
  readonly urls: string[];
  private readonly agent: Agent;
  private readonly rawAgent: RawAgent;
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pendingTokens = new Map<string, Promise<CachedToken>>();
  private readonly downUntil = new Map<string, number>();
  private readonly limiters = new Map<string, RequestLimiter>();

  constructor(readonly opts: HttpClientOptions) {
    if (opts.urls.length === 0) throw new Error("a remote registry needs at least one URL");
    this.urls = opts.urls.map((u) => u.replace(/\/+$/, ""));
    for (const u of this.urls) {
      const parsed = new URL(u);
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
        throw new Error(`registry URL '${u}' must start with http:// or https://`);
      }
    }
    const tls = {
      rejectUnauthorized: opts.tlsVerify,
      ...(opts.tls?.ca ? { ca: opts.tls.ca } : {}),
      ...(opts.tls?.cert ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
    };
    const keepAliveTimeout = 10_000;
    this.agent = new Agent({
      connect: { timeout: opts.connectTimeout, ...tls },
      headersTimeout: opts.headersTimeout,
      bodyTimeout: opts.bodyTimeout,
      keepAliveTimeout,
    });
    // Blob bodies: the same timeouts and TLS settings, read without an allocation per read.
    this.rawAgent = new RawAgent({
      connectTimeout: opts.connectTimeout,
      headersTimeout: opts.headersTimeout,
      bodyTimeout: opts.bodyTimeout,
      keepAliveTimeout,
      tls,
      ...(opts.maxIdleConnections !== undefined ? { maxIdlePerOrigin: opts.maxIdleConnections } : {}),
    });
    if (opts.maxConcurrentRequests !== undefined || opts.requestsPerSecond !== undefined) {
      for (const u of this.urls) {
        this.limiters.set(u, new RequestLimiter(opts.maxConcurrentRequests, opts.requestsPerSecond));
      }
    }
  }

  async close(): Promise<void> {
    this.rawAgent.close();
    await this.agent.close();
  }

  /** The base URLs in the order to try: as written, those that failed lately last. */
  private orderedOrigins(): string[] {
    const now = Date.now();
    const up = this.urls.filter((u) => (this.downUntil.get(u) ?? 0) <= now);
    const down = this.urls.filter((u) => (this.downUntil.get(u) ?? 0) > now);
    return [...up, ...down];
  }

  private credentialsFor(origin: string, scopes: string[]): BasicCredentials | undefined {
    const c = this.opts.credentials;
    if (!c) return undefined;
    if (typeof c !== "function") return c;
    const host = new URL(origin).host;
    const repo = scopes.map((s) => /^repository:(.+):[^:]*$/.exec(s)?.[1]).find((r) => r !== undefined);
    return c(host, repo);
  }

  /**
   * Sends a request, retrying and failing over as the request allows. Any status comes back as is,
   * except that a retryable one (5xx, 429, 408) is tried again first; network failures throw.
   */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const replayable = !(req.body && typeof (req.body as Readable).pipe === "function");
    const retries = req.idempotent && replayable ? this.opts.retry.maxRetries : 0;
    let lastError: UpstreamError | undefined;
    for (let attempt = 0; ; attempt++) {
      const origins = req.origin ? [req.origin] : this.orderedOrigins();
      let retryAfter: number | undefined;
      for (const origin of origins) {
        try {
          const res = await this.sendAuthed(origin, req, replayable);
          if (isRetryableStatus(res.status)) {
            const text = await readText(res.body, 64 * 1024).catch(() => "");
            const ra = parseRetryAfter(res.headers["retry-after"]);
            retryAfter = ra === undefined ? retryAfter : Math.max(retryAfter ?? 0, ra);
            lastError = statusError(res.status, text, res.url, "INTERNAL_ERROR", ra);
            this.markDown(origin);
            if (!replayable) break;
            continue;
          }
          this.downUntil.delete(origin);
          return res;
        } catch (err) {
          if (req.signal?.aborted) throw err;
          lastError =
            err instanceof UpstreamError
              ? err
              : isPlainHttpAnswer(err)
                ? new UpstreamError("INTERNAL_ERROR", this.plainHttpMessage(req.method, origin), {
                    url: origin,
                    retryable: false,
                    cause: err,
                  })
                : new UpstreamError(
                    "INTERNAL_ERROR",
                    `${req.method} ${origin}: ${describeNetworkError(err)}`,
                    {
                      url: origin,
                      retryable: isTransientNetworkError(err),
                      cause: err,
                    },
                  );
          this.markDown(origin);
          if (!replayable) break;
        }
      }
      const err = lastError!;
      if (attempt >= retries || !err.retryable) {
        if (retries > 0) err.retried = true;
        throw err;
      }
      let delay = backoffDelay(this.opts.retry, attempt);
      if (retryAfter !== undefined) {
        if (retryAfter > this.opts.retry.maxRetryAfter) {
          throw new UpstreamError(
            err.code,
            `${err.message} (asked to retry after ${Math.round(retryAfter / 1000)} s, longer than the ${Math.round(this.opts.retry.maxRetryAfter / 1000)} s allowed)`,
            { url: err.url, upstreamStatus: err.upstreamStatus, retryable: false, retryAfter },
          );
        }
        delay = Math.max(delay, retryAfter);
      }
      this.opts.onRetry?.({ url: err.url, attempt: attempt + 1, delay, reason: err.message });
      await sleep(delay, req.signal);
    }
  }

  private plainHttpMessage(method: string, origin: string): string {
    const host = new URL(origin).host;
    const advice = this.opts.plainHttpAdvice?.(host) ?? `if it is meant to, address it as http://${host}`;
    return `${method} ${origin}: the server at ${host} answered in plain HTTP, not TLS (OpenSSL: wrong version number); ${advice}`;
  }

  private markDown(origin: string): void {
    if (this.urls.length > 1) this.downUntil.set(origin, Date.now() + this.opts.failoverCooldown);
  }

  private async sendAuthed(origin: string, req: HttpRequest, replayable: boolean): Promise<HttpResponse> {
    let auth: string | undefined;
    try {
      auth = await this.authorization(origin, req.scopes, undefined, req.signal);
    } catch (err) {
      if (req.signal?.aborted) throw err;
      // The last challenge's token service failed and that challenge is forgotten: a plain request
      // finds out whether the upstream still wants a token, and from which realm.
      auth = undefined;
    }
    let res = await this.raw(origin, req, auth);
    if (res.status !== 401) return res;
    const challenges = parseChallenges(res.headers["www-authenticate"]);
    const challenge =
      challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic");
    if (!challenge) return res;
    this.challenges.set(origin, challenge);
    if (!replayable) return res;
    // A scope named by the challenge (insufficient_scope) is asked for along with ours.
    const scopes = [...req.scopes];
    if (challenge.params.scope) {
      for (const s of challenge.params.scope.split(" ")) if (s && !scopes.includes(s)) scopes.push(s);
    }
    const fresh = await this.authorization(origin, scopes, auth ?? "", req.signal);
    if (fresh === undefined || fresh === auth) return res;
    await res.body.dump().catch(() => {});
    auth = fresh;
    res = await this.raw(origin, req, auth);
    return res;
  }

  /**
   * The Authorization header for `scopes` on `origin` from what its last challenge asked for.
   * `rejected` is the header a 401 answered (empty when none was sent): a cached token other than
   * that one, fetched meanwhile by a concurrent request, is used rather than fetching yet another.
   */
  private async authorization(
    origin: string,
    scopes: string[],
    rejected: string | undefined,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const challenge = this.challenges.get(origin);
    if (!challenge) return undefined;
    const creds = this.credentialsFor(origin, scopes);
    if (challenge.scheme === "basic") {
      return creds
        ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`
        : undefined;
    }
    if (challenge.scheme !== "bearer") return undefined;
    const realm = challenge.params.realm;
    if (!realm) return undefined;
    const service = challenge.params.service ?? "";
    const key = `${realm}|${service}|${[...scopes].sort().join(" ")}|${creds?.username ?? ""}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now() && `Bearer ${cached.token}` !== rejected)
      return `Bearer ${cached.token}`;
    this.tokens.delete(key);
    let pending = this.pendingTokens.get(key);
    if (!pending) {
      pending = this.fetchToken(realm, service, scopes, creds, signal).finally(() =>
        this.pendingTokens.delete(key),
      );
      this.pendingTokens.set(key, pending);
    }
    let token: CachedToken;
    try {
      token = await pending;
    } catch (err) {
      this.forgetChallenge(origin, challenge);
      throw err;
    }
    this.tokens.set(key, token);
    return `Bearer ${token.token}`;
  }

  /**
   * Drops a challenge whose token service failed, so the next request asks the upstream anew rather
   * than a realm that may be gone for good. A newer challenge, taught meanwhile by another 401, stays.
   */
  private forgetChallenge(origin: string, challenge: Challenge): void {
    if (this.challenges.get(origin) === challenge) this.challenges.delete(origin);
  }

  private async fetchToken(
    realm: string,
    service: string,
    scopes: string[],
    creds: BasicCredentials | undefined,
    signal?: AbortSignal,
  ): Promise<CachedToken> {
    const url = new URL(realm);
    if (service) url.searchParams.set("service", service);
    for (const s of scopes) url.searchParams.append("scope", s);
    if (creds) url.searchParams.set("account", creds.username);
    const headers: Record<string, string> = { "user-agent": this.opts.userAgent };
    if (creds) {
      headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
    }
    for (let attempt = 0; ; attempt++) {
      let status: number;
      let text: string;
      try {
        const res = await request(url, { method: "GET", headers, dispatcher: this.agent, signal });
        status = res.statusCode;
        text = await readText(res.body, 1024 * 1024);
      } catch (err) {
        if (attempt < this.opts.retry.maxRetries && isTransientNetworkError(err) && !signal?.aborted) {
          await sleep(backoffDelay(this.opts.retry, attempt), signal);
          continue;
        }
        throw new UpstreamError("UNAUTHORIZED", `token service ${url.origin}: ${describeNetworkError(err)}`, {
          url: url.href,
          retryable: isTransientNetworkError(err),
          cause: err,
          status: 502,
        });
      }
      if (isRetryableStatus(status) && attempt < this.opts.retry.maxRetries) {
        await sleep(backoffDelay(this.opts.retry, attempt), signal);
        continue;
      }
      if (status !== 200) {
        const who = creds ? `as '${creds.username}'` : "anonymously (no credentials configured)";
        const detail = parseErrorBody(text).message ?? text.slice(0, 200);
        throw new UpstreamError(
          status === 401 || status === 403 ? "UNAUTHORIZED" : "INTERNAL_ERROR",
          `token service ${url.origin}${url.pathname} refused a token for ${scopes.join(" ") || "(no scope)"} ${who}: HTTP ${status}${detail ? ` ${detail}` : ""}`,
          { url: url.href, upstreamStatus: status, retryable: isRetryableStatus(status) },
        );
      }
      let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
      try {
        doc = JSON.parse(text);
      } catch {
        throw new UpstreamError("UNAUTHORIZED", `token service ${url.origin} sent a body that is not JSON`, {
          url: url.href,
          retryable: false,
          status: 502,
        });
      }
      const token =
        typeof doc.token === "string" && doc.token
          ? doc.token
          : typeof doc.access_token === "string"
            ? doc.access_token
            : "";
      if (!token) {
        throw new UpstreamError("UNAUTHORIZED", `token service ${url.origin} sent no token`, {
          url: url.href,
          retryable: false,
          status: 502,
        });
      }
      // docker's rule: 60 s when the service does not say; refresh a little early.
      const expiresIn = typeof doc.expires_in === "number" && doc.expires_in > 0 ? doc.expires_in : 60;
      const issued = typeof doc.issued_at === "string" ? Date.parse(doc.issued_at) : Number.NaN;
      const start = Number.isNaN(issued) || issued > Date.now() ? Date.now() : issued;
      const margin = Math.min(10_000, (expiresIn * 1000) / 10);
      return { token, expiresAt: start + expiresIn * 1000 - margin };
    }
  }

  /**
   * One HTTP exchange on `origin`, following redirects for GET/HEAD, within the origin's request
   * limits and the time limit: both hold until the answer's body is read or dropped.
   */
  private async raw(origin: string, req: HttpRequest, auth: string | undefined): Promise<HttpResponse> {
    const release = await this.limiters.get(origin)?.acquire(req.signal);
    const limit = this.opts.requestTimeout;
    const timer = limit === undefined ? undefined : new AbortController();
    const timeout =
      timer &&
      setTimeout(() => timer.abort(new RequestTimeoutError(`${req.method} ${origin}`, limit!)), limit);
    const done = () => {
      clearTimeout(timeout);
      release?.();
    };
    const signal = timer
      ? req.signal
        ? AbortSignal.any([req.signal, timer.signal])
        : timer.signal
      : req.signal;
    const started = process.hrtime.bigint();
    const report = (status: number, bytes: number) =>
      this.opts.onExchange?.({
        host: new URL(origin).host,
        method: req.method,
        status,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        bytes,
      });
    try {
      const res = await this.exchange(origin, { ...req, ...(signal ? { signal } : {}) }, auth);
      report(res.status, req.method === "HEAD" ? 0 : Number(res.headers["content-length"] ?? 0) || 0);
      if (req.method === "HEAD") done();
      else whenBodyDone(res.body, done);
      return res;
    } catch (err) {
      report(0, 0);
      done();
      throw timer?.signal.aborted && !req.signal?.aborted ? timer.signal.reason : err;
    }
  }

  private async exchange(origin: string, req: HttpRequest, auth: string | undefined): Promise<HttpResponse> {
    let url =
      req.path.startsWith("http://") || req.path.startsWith("https://") ? req.path : origin + req.path;
    const first = url;
    const headers: Record<string, string> = { "user-agent": this.opts.userAgent, ...req.headers };
    if (auth) headers.authorization = auth;
    for (let hop = 0; ; hop++) {
      const res =
        req.bulk && req.method === "GET"
          ? await this.rawAgent
              .get(url, headers, req.signal)
              .then((r) => ({ statusCode: r.status, headers: r.headers, body: r.body }))
          : await request(url, {
              method: req.method,
              headers,
              body: req.body ?? null,
              dispatcher: this.agent,
              signal: req.signal,
              headersTimeout: this.opts.headersTimeout,
              bodyTimeout: this.opts.bodyTimeout,
            });
      const location = res.headers.location;
      if (
        req.followRedirects &&
        [301, 302, 303, 307, 308].includes(res.statusCode) &&
        typeof location === "string" &&
        hop < maxRedirects
      ) {
        await res.body.dump().catch(() => {});
        const next = new URL(location, url);
        this.opts.onRedirect?.({
          method: req.method,
          request: first,
          from: url,
          to: next.href,
          status: res.statusCode,
        });
        // Credentials for the registry never go to another host (CDNs take signed URLs).
        if (next.origin !== new URL(url).origin) delete headers.authorization;
        url = next.href;
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, url, origin };
    }
  }
}

/** A request that outlived its time limit; another attempt may be quicker. */
export class RequestTimeoutError extends Error {
  readonly code = "KAGAMI_REQUEST_TIMEOUT";
  readonly retryable = true;
  constructor(what: string, limitMs: number) {
    super(`${what}: not finished within ${formatMs(limitMs)} (the upstream's syncTimeout)`);
    this.name = "RequestTimeoutError";
  }
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

/** Calls `fn` once the body has been read to its end, dropped or failed. */
function whenBodyDone(body: ResponseBody, fn: () => void): void {
  if (body instanceof RawBody) {
    body.onDone(fn);
    return;
  }
  if (body.readableEnded || body.destroyed) {
    fn();
    return;
  }
  body.once("end", fn);
  body.once("close", fn);
  body.once("error", fn);
}

/** Reads a small body as text, refusing more than `limit` bytes. */
export async function readText(body: ResponseBody, limit: number): Promise<string> {
  return (await readBytes(body, limit)).toString("utf8");
}

export async function readBytes(body: ResponseBody, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    n += (chunk as Buffer).length;
    if (n > limit) {
      body.destroy();
      throw new Error(`response body is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** An UpstreamError for an HTTP answer, with the upstream's own code and message when it sent them. */
export function statusError(
  status: number,
  bodyText: string,
  url: string,
  fallback: ErrorCode,
  retryAfter?: number,
): UpstreamError {
  const parsed = parseErrorBody(bodyText);
  let code: ErrorCode = parsed.code ?? fallback;
  if (!parsed.code) {
    if (status === 401) code = "UNAUTHORIZED";
    else if (status === 403) code = "DENIED";
    else if (status === 429) code = "TOOMANYREQUESTS";
    else if (status >= 500) code = "INTERNAL_ERROR";
  }
  const words = parsed.message ?? bodyText.trim().slice(0, 200);
  const opts: {
    url: string;
    upstreamStatus: number;
    retryable: boolean;
    retryAfter?: number;
    detail?: unknown;
  } = { url, upstreamStatus: status, retryable: isRetryableStatus(status) };
  if (retryAfter !== undefined) opts.retryAfter = retryAfter;
  if (parsed.detail !== undefined) opts.detail = parsed.detail;
  return new UpstreamError(code, `${url} answered HTTP ${status}${words ? `: ${words}` : ""}`, opts);
}
