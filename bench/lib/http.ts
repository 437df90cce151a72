/**
 * A lean HTTP/1.1 client over node:http with keep-alive: one Client is one benchmark "client" (zb's
 * per-goroutine HTTP client), holding its own connection. Bodies stream both ways; a response body is
 * counted and dropped unless it is asked for.
 */
import { Agent, type IncomingHttpHeaders, request } from "node:http";
import type { Readable } from "node:stream";

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body, when `keepBody` was set. */
  body?: Buffer;
  /** Body bytes received. */
  bytes: number;
  /** Milliseconds from sending to the response headers. */
  headersMs: number;
  /** Milliseconds from sending to the first body byte (= headersMs for an empty body). */
  firstByteMs: number;
  /** Milliseconds from sending to the end of the body. */
  ms: number;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | number>;
  body?: Buffer | Readable;
  keepBody?: boolean;
  timeoutMs?: number;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class Client {
  readonly agent: Agent;

  constructor(
    readonly base: string,
    connections = 1,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  }

  url(pathOrUrl: string): URL {
    return new URL(pathOrUrl, this.base);
  }

  request(pathOrUrl: string | URL, opts: RequestOptions = {}): Promise<Response> {
    const url = typeof pathOrUrl === "string" ? this.url(pathOrUrl) : pathOrUrl;
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...opts.headers };
      if (Buffer.isBuffer(opts.body)) headers["Content-Length"] = opts.body.length;
      else if (opts.body === undefined && opts.method && !["GET", "HEAD"].includes(opts.method)) {
        headers["Content-Length"] ??= 0;
      }
      const req = request(url, { method: opts.method ?? "GET", headers, agent: this.agent }, (res) => {
        const headersMs = performance.now() - started;
        let firstByteMs: number | undefined;
        let bytes = 0;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => {
          firstByteMs ??= performance.now() - started;
          bytes += chunk.length;
          if (opts.keepBody) chunks.push(chunk);
        });
        res.on("error", reject);
        res.on("end", () => {
          const response: Response = {
            status: res.statusCode ?? 0,
            headers: res.headers,
            bytes,
            headersMs,
            firstByteMs: firstByteMs ?? headersMs,
            ms: performance.now() - started,
          };
          if (opts.keepBody) response.body = Buffer.concat(chunks);
          resolve(response);
        });
      });
      req.setTimeout(opts.timeoutMs ?? 120_000, () => req.destroy(new Error(`timeout: ${url.pathname}`)));
      req.on("error", reject);
      if (opts.body === undefined) req.end();
      else if (Buffer.isBuffer(opts.body)) req.end(opts.body);
      else {
        const body = opts.body;
        body.on("error", (err) => req.destroy(err));
        body.pipe(req);
      }
    });
  }

  /** A request that must answer `expect`; anything else throws with the body's first bytes. */
  async expect(expect: number, pathOrUrl: string | URL, opts: RequestOptions = {}): Promise<Response> {
    const res = await this.request(pathOrUrl, { ...opts, keepBody: opts.keepBody ?? true });
    if (res.status !== expect) {
      const url = typeof pathOrUrl === "string" ? pathOrUrl : pathOrUrl.pathname;
      throw new HttpError(
        res.status,
        `${opts.method ?? "GET"} ${url.slice(0, 120)}: ${res.status} (expected ${expect}) ${res.body?.toString("utf8", 0, 300) ?? ""}`,
      );
    }
    return res;
  }

  close(): void {
    this.agent.destroy();
  }
}
