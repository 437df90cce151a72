import net from "node:net";
import { Readable } from "node:stream";
import tls from "node:tls";
import type { ViewSink } from "../registry/registry.ts";

export type { ViewSink };

/**
 * HTTP/1.1 GET for blob bodies, read into one reused buffer.
 *
 * undici allocates a fresh buffer for every socket read and copies it through its parser; at a GiB
 * a mirror spends more CPU on that garbage than on hashing (docs/benchmarks.md, "The mirror's first
 * pull"). Here every read lands in one process-wide buffer (net's `onread`) and the body is handed
 * on as views of it, which the consumer copies or hashes before returning. undici still carries
 * everything else (manifests, auth, uploads, tokens); this module only fetches a URL already chosen.
 */

/**
 * One buffer for all connections: libuv fills it for one socket and the callback runs to the end
 * before the next read, so no view outlives its callback and sharing it is safe.
 */
const readBufferSize = 1024 * 1024;
const readBuffer = Buffer.allocUnsafe(readBufferSize);

/** Largest view a consumer receives at once. */
export const maxViewBytes = readBufferSize;

const maxHeadBytes = 64 * 1024;
const maxChunkLineBytes = 4096;

/** A failure of the raw HTTP exchange itself: time-outs, a cut or unreadable response. */
export class RawHttpError extends Error {
  constructor(
    message: string,
    readonly code:
      | "RAW_CONNECT_TIMEOUT"
      | "RAW_HEADERS_TIMEOUT"
      | "RAW_BODY_TIMEOUT"
      | "RAW_PREMATURE_END"
      | "RAW_BAD_RESPONSE"
      | "RAW_BAD_REQUEST"
      | "RAW_CLOSED",
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "RawHttpError";
  }
}

export interface RawAgentOptions {
  connectTimeout: number;
  headersTimeout: number;
  /** Milliseconds the body may stall while we are reading it. */
  bodyTimeout: number;
  /** How long an idle connection is kept for the next request. */
  keepAliveTimeout: number;
  tls: Pick<tls.ConnectionOptions, "rejectUnauthorized" | "ca" | "cert" | "key">;
  /** Idle connections kept per origin (default 8); more are closed once their exchange ends. */
  maxIdlePerOrigin?: number;
}

export type RawHeaders = Record<string, string | string[]>;

const defaultMaxIdlePerOrigin = 8;

/** Connections to HTTP/1.1 origins for bodies read without per-read allocation. */
export class RawAgent {
  private readonly idle = new Map<string, RawConnection[]>();
  private closed = false;

  constructor(readonly opts: RawAgentOptions) {}

  /** Sends a GET; resolves with the status and headers, the body follows on `body`. */
  async get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<RawResponse> {
    if (this.closed) throw new RawHttpError("the HTTP client is closed", "RAW_CLOSED", false);
    const target = new URL(url);
    if (target.protocol !== "http:" && target.protocol !== "https:") {
      throw new RawHttpError(`cannot fetch ${url}: only http and https`, "RAW_BAD_REQUEST", false);
    }
    const head = requestHead(target, headers);
    signal?.throwIfAborted();
    const key = originKey(target);
    // A kept connection the server closed meanwhile fails before any answer: try a new one then.
    for (;;) {
      const reused = this.takeIdle(key);
      const conn = reused ?? (await this.connect(target, key, signal));
      try {
        return await conn.exchange(head, signal);
      } catch (err) {
        if (reused && (err as { beforeResponse?: boolean }).beforeResponse && !signal?.aborted) continue;
        throw err;
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of list) c.destroy();
    this.idle.clear();
  }

  private takeIdle(key: string): RawConnection | undefined {
    const list = this.idle.get(key);
    for (let c = list?.pop(); c; c = list?.pop()) {
      if (c.usable()) {
        c.activate();
        return c;
      }
      c.destroy();
    }
    return undefined;
  }

  /** Called by a connection whose exchange ended cleanly and may carry another. */
  release(conn: RawConnection): void {
    const list = this.idle.get(conn.key) ?? [];
    if (this.closed || list.length >= (this.opts.maxIdlePerOrigin ?? defaultMaxIdlePerOrigin)) {
      conn.destroy();
      return;
    }
    list.push(conn);
    this.idle.set(conn.key, list);
    conn.park(this.opts.keepAliveTimeout, () => {
      const i = list.indexOf(conn);
      if (i >= 0) list.splice(i, 1);
    });
  }

  private connect(target: URL, key: string, signal?: AbortSignal): Promise<RawConnection> {
    const secure = target.protocol === "https:";
    const host = target.hostname.replace(/^\[|\]$/g, "");
    const port = Number(target.port || (secure ? 443 : 80));
    return new Promise((resolve, reject) => {
      let conn: RawConnection | undefined;
      const onread = {
        buffer: readBuffer,
        callback: (n: number, buf: Uint8Array) => conn!.onRead(buf as Buffer, n),
      };
      const socket = secure
        ? tls.connect({
            host,
            port,
            ...(net.isIP(host) ? {} : { servername: host }),
            ...this.opts.tls,
            onread,
          } as tls.ConnectionOptions)
        : net.connect({ host, port, onread });
      conn = new RawConnection(this, key, socket);
      const timer = setTimeout(() => {
        socket.destroy(
          new RawHttpError(
            `connecting to ${target.host} timed out after ${this.opts.connectTimeout} ms`,
            "RAW_CONNECT_TIMEOUT",
            true,
          ),
        );
      }, this.opts.connectTimeout);
      const onAbort = () => socket.destroy(signal?.reason as Error);
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        socket.off("error", done);
        socket.off(secure ? "secureConnect" : "connect", ok);
        if (err) reject(err);
        else resolve(conn!);
      };
      const ok = () => done();
      socket.once(secure ? "secureConnect" : "connect", ok);
      socket.once("error", done);
    });
  }
}

function originKey(u: URL): string {
  return `${u.protocol}//${u.hostname}:${u.port || (u.protocol === "https:" ? "443" : "80")}`;
}

function requestHead(target: URL, headers: Record<string, string>): Buffer {
  let head = `GET ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${target.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) {
      throw new RawHttpError(`header '${name}' cannot be sent: invalid characters`, "RAW_BAD_REQUEST", false);
    }
    if (name.toLowerCase() === "host") continue;
    head += `${name}: ${value}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, "latin1");
}

type Phase = "head" | "length" | "chunk-size" | "chunk-data" | "chunk-crlf" | "trailer" | "close" | "done";

/** One socket and the response being read from it. */
class RawConnection {
  private exchangeActive = false;
  private phase: Phase = "head";
  private headParts: Buffer[] = [];
  private headBytes = 0;
  private remaining = 0;
  private lineParts: Buffer[] = [];
  private lineBytes = 0;
  private keepAlive = true;
  private receivedAny = false;
  private body: RawBody | undefined;
  private onHead: ((res: RawResponse) => void) | undefined;
  private onFail: ((err: Error) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerKind: "headers" | "body" | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private dead = false;
  private paused = false;

  constructor(
    private readonly agent: RawAgent,
    readonly key: string,
    private readonly socket: net.Socket,
  ) {
    socket.setNoDelay(true);
    socket.on("error", (err) => {
      // A reset before any answer is the kept-connection race too (the agent retries on a new one).
      if (!this.receivedAny && !(err instanceof RawHttpError)) {
        (err as { beforeResponse?: boolean }).beforeResponse = true;
      }
      this.fail(err);
    });
    socket.on("end", () => this.onEnd());
    socket.on("close", () => {
      this.dead = true;
      this.fail(
        Object.assign(
          new RawHttpError("the connection closed during the response", "RAW_PREMATURE_END", true),
          {
            beforeResponse: !this.receivedAny,
          },
        ),
      );
    });
  }

  usable(): boolean {
    return !this.dead && !this.socket.destroyed && this.socket.readyState === "open";
  }

  activate(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.socket.ref();
  }

  park(timeout: number, onExpire: () => void): void {
    this.socket.unref();
    this.idleTimer = setTimeout(() => {
      onExpire();
      this.destroy();
    }, timeout);
    this.idleTimer.unref();
  }

  destroy(err?: Error): void {
    this.dead = true;
    clearTimeout(this.idleTimer);
    this.clearTimer();
    this.socket.destroy(err);
  }

  exchange(head: Buffer, signal?: AbortSignal): Promise<RawResponse> {
    this.exchangeActive = true;
    this.phase = "head";
    this.headParts = [];
    this.headBytes = 0;
    this.receivedAny = false;
    this.keepAlive = true;
    this.body = undefined;
    this.paused = false;
    this.socket.resume();
    return new Promise((resolve, reject) => {
      const onAbort = () => this.destroy(signal?.reason as Error);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.onHead = (res) => {
        signal?.removeEventListener("abort", onAbort);
        // Aborting later stops the body, as undici's signal does.
        if (signal) res.body.abortOn(signal);
        resolve(res);
      };
      this.onFail = (err) => {
        signal?.removeEventListener("abort", onAbort);
        reject(err);
      };
      this.startTimer("headers");
      this.socket.write(head);
    });
  }

  private startTimer(kind: "headers" | "body"): void {
    const ms = kind === "headers" ? this.agent.opts.headersTimeout : this.agent.opts.bodyTimeout;
    this.clearTimer();
    this.timerKind = kind;
    this.timer = setTimeout(() => {
      const words =
        kind === "headers" ? `no response headers within ${ms} ms` : `the response body stalled for ${ms} ms`;
      this.destroy(
        new RawHttpError(words, kind === "headers" ? "RAW_HEADERS_TIMEOUT" : "RAW_BODY_TIMEOUT", true),
      );
    }, ms);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerKind = undefined;
  }

  /** The onread callback: consumes `n` bytes of the shared buffer; false pauses the socket. */
  onRead(buf: Buffer, n: number): boolean {
    if (!this.exchangeActive) {
      // Bytes nobody asked for: this connection cannot be trusted with another request.
      this.destroy();
      return false;
    }
    this.receivedAny = true;
    if (this.timerKind === "body") this.timer?.refresh();
    try {
      this.parse(buf.subarray(0, n));
    } catch (err) {
      this.destroy(err as Error);
      return false;
    }
    if (this.paused) {
      this.clearTimer();
      return false;
    }
    return true;
  }

  /** Called by the body when its consumer wants bytes again. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.exchangeActive && this.phase !== "done") this.startTimer("body");
    if (!this.dead) this.socket.resume();
  }

  private parse(view: Buffer): void {
    let v = view;
    while (v.length > 0 && this.exchangeActive) {
      switch (this.phase) {
        case "head":
          v = this.parseHead(v);
          break;
        case "length":
          v = this.deliverRemaining(v);
          if (this.remaining === 0) this.complete(v.length > 0);
          break;
        case "close":
          this.deliver(v);
          v = v.subarray(v.length);
          break;
        case "chunk-size": {
          const line = this.takeLine(v);
          if (!line) return;
          v = line.rest;
          const size = /^([0-9a-fA-F]+)[ \t]*(;.*)?$/.exec(line.text);
          if (!size || size[1]!.length > 12) {
            throw new RawHttpError(
              `bad chunk size line '${line.text.slice(0, 40)}'`,
              "RAW_BAD_RESPONSE",
              false,
            );
          }
          this.remaining = Number.parseInt(size[1]!, 16);
          this.phase = this.remaining === 0 ? "trailer" : "chunk-data";
          break;
        }
        case "chunk-data":
          v = this.deliverRemaining(v);
          if (this.remaining === 0) this.phase = "chunk-crlf";
          break;
        case "chunk-crlf": {
          const line = this.takeLine(v);
          if (!line) return;
          if (line.text !== "")
            throw new RawHttpError("chunk not followed by CRLF", "RAW_BAD_RESPONSE", false);
          v = line.rest;
          this.phase = "chunk-size";
          break;
        }
        case "trailer": {
          const line = this.takeLine(v);
          if (!line) return;
          v = line.rest;
          if (line.text === "") this.complete(v.length > 0);
          break;
        }
        case "done":
          return;
      }
    }
  }

  /** Delivers as much of `v` as the body (or chunk) still has; returns what follows it. */
  private deliverRemaining(v: Buffer): Buffer {
    const n = Math.min(v.length, this.remaining);
    this.remaining -= n;
    this.deliver(v.subarray(0, n));
    return v.subarray(n);
  }

  /** A CRLF-terminated line, gathered across reads; undefined while it is incomplete. */
  private takeLine(v: Buffer): { text: string; rest: Buffer } | undefined {
    const at = v.indexOf(10);
    if (at < 0) {
      this.lineBytes += v.length;
      if (this.lineBytes > maxChunkLineBytes) {
        throw new RawHttpError("chunk framing line too long", "RAW_BAD_RESPONSE", false);
      }
      this.lineParts.push(Buffer.from(v));
      return undefined;
    }
    const part = v.subarray(0, at);
    const whole = this.lineParts.length > 0 ? Buffer.concat([...this.lineParts, part]) : part;
    this.lineParts = [];
    this.lineBytes = 0;
    let text = whole.toString("latin1");
    if (text.endsWith("\r")) text = text.slice(0, -1);
    return { text, rest: v.subarray(at + 1) };
  }

  private parseHead(v: Buffer): Buffer {
    // The end of the head may straddle reads: search the gathered bytes with the new ones.
    const prior = this.headBytes;
    const all = prior > 0 ? Buffer.concat([...this.headParts, v]) : v;
    const from = Math.max(0, prior - 3);
    const end = all.indexOf("\r\n\r\n", from, "latin1");
    if (end < 0) {
      if (all.length > maxHeadBytes) {
        throw new RawHttpError(`response head larger than ${maxHeadBytes} bytes`, "RAW_BAD_RESPONSE", false);
      }
      this.headParts = [Buffer.from(all)];
      this.headBytes = all.length;
      return v.subarray(v.length);
    }
    if (end > maxHeadBytes) {
      throw new RawHttpError(`response head larger than ${maxHeadBytes} bytes`, "RAW_BAD_RESPONSE", false);
    }
    const text = all.subarray(0, end).toString("latin1");
    this.headParts = [];
    this.headBytes = 0;
    const rest = v.subarray(end + 4 - prior);
    const lines = text.split("\r\n");
    const status = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
    if (!status) {
      throw new RawHttpError(
        `not an HTTP/1.x response: '${(lines[0] ?? "").slice(0, 60)}'`,
        "RAW_BAD_RESPONSE",
        false,
      );
    }
    const code = Number(status[2]);
    // No prototype: a header named like an Object member must stay a plain value.
    const headers: RawHeaders = Object.create(null);
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0)
        throw new RawHttpError(`bad header line '${line.slice(0, 60)}'`, "RAW_BAD_RESPONSE", false);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const had = headers[name];
      if (had === undefined) headers[name] = value;
      else if (Array.isArray(had)) had.push(value);
      else headers[name] = [had, value];
    }
    if (code >= 100 && code < 200) return rest; // an interim answer; the real one follows
    const connection = String(headers.connection ?? "").toLowerCase();
    this.keepAlive = status[1] === "1" ? !connection.includes("close") : connection.includes("keep-alive");
    const te = String(headers["transfer-encoding"] ?? "").toLowerCase();
    const cl = headers["content-length"];
    if (code === 204 || code === 304) {
      this.phase = "done";
    } else if (te) {
      if (/(^|,)\s*chunked\s*$/.test(te)) this.phase = "chunk-size";
      else {
        this.phase = "close";
        this.keepAlive = false;
      }
    } else if (cl !== undefined) {
      const values = (Array.isArray(cl) ? cl : [cl]).flatMap((x) => x.split(",").map((s) => s.trim()));
      if (!values.every((x) => /^\d{1,15}$/.test(x) && x === values[0]) || values.length === 0) {
        throw new RawHttpError(`bad Content-Length '${String(cl)}'`, "RAW_BAD_RESPONSE", false);
      }
      this.remaining = Number(values[0]);
      this.phase = this.remaining === 0 ? "done" : "length";
    } else {
      this.phase = "close";
      this.keepAlive = false;
    }
    this.body = new RawBody(this);
    const res: RawResponse = { status: code, headers, body: this.body };
    this.clearTimer();
    if (this.phase !== "done") this.startTimer("body");
    // Nothing is read until the caller says how it takes the body.
    this.paused = true;
    const onHead = this.onHead;
    this.onHead = undefined;
    this.onFail = undefined;
    onHead?.(res);
    if (this.phase === "done") this.complete(rest.length > 0);
    return rest;
  }

  private deliver(view: Buffer): void {
    if (view.length === 0 || !this.body) return;
    if (!this.body.offer(view)) this.paused = true;
  }

  /** The response is whole; `extra` says bytes followed that belong to no request. */
  private complete(extra: boolean): void {
    if (!this.exchangeActive) return;
    this.phase = "done";
    this.exchangeActive = false;
    this.clearTimer();
    const body = this.body!;
    this.body = undefined;
    if (extra || !this.keepAlive) this.destroy();
    else {
      // An idle connection keeps reading, so that the server closing it is noticed.
      this.paused = false;
      this.agent.release(this);
    }
    body.finish();
  }

  private onEnd(): void {
    if (this.exchangeActive && this.phase === "close") {
      this.keepAlive = false;
      this.complete(false);
      return;
    }
    this.destroy();
  }

  private fail(err: Error): void {
    this.clearTimer();
    if (!this.exchangeActive) return;
    this.exchangeActive = false;
    this.dead = true;
    const onFail = this.onFail;
    this.onHead = undefined;
    this.onFail = undefined;
    if (onFail) onFail(err);
    else this.body?.fail(err);
    this.body = undefined;
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /** The body's consumer went away before the end: the rest of the response is not read. */
  abandon(err?: Error): void {
    if (!this.exchangeActive) return;
    this.body = undefined;
    this.exchangeActive = false;
    this.destroy(err);
  }
}

export interface RawResponse {
  status: number;
  headers: RawHeaders;
  body: RawBody;
}

/**
 * A response body, taken one of two ways: `pump(sink)` hands the consumer views of the shared read
 * buffer (no allocation per read), or reading it as a Readable gives copies (small bodies, errors).
 */
export class RawBody extends Readable {
  private sink: ViewSink | undefined;
  private mode: "undecided" | "stream" | "sink" = "undecided";
  private held: Buffer[] = [];
  private ended = false;
  private stopped = false;
  private failure: Error | undefined;
  private settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private conn: RawConnection | undefined;
  private detach: (() => void) | undefined;
  private readonly doneCallbacks: (() => void)[] = [];
  private isDone = false;

  constructor(conn: RawConnection) {
    super({ highWaterMark: 256 * 1024 });
    this.conn = conn;
  }

  /** Bytes from the connection; false asks it to pause. */
  offer(view: Buffer): boolean {
    if (this.mode === "sink") return this.sink!(view);
    if (this.mode === "stream") return this.push(Buffer.from(view));
    this.held.push(Buffer.from(view));
    return false;
  }

  /** Runs `fn` once the body was read to its end, failed, or was dropped: the connection is free. */
  onDone(fn: () => void): void {
    if (this.isDone) fn();
    else this.doneCallbacks.push(fn);
  }

  private settled(): void {
    if (this.isDone) return;
    this.isDone = true;
    for (const fn of this.doneCallbacks.splice(0)) fn();
  }

  finish(): void {
    this.conn = undefined;
    this.ended = true;
    this.settled();
    this.detach?.();
    if (this.mode === "stream") this.push(null);
    else if (this.mode === "sink") this.settle?.resolve();
  }

  fail(err: Error): void {
    this.conn = undefined;
    this.detach?.();
    this.settled();
    if (this.mode === "stream") {
      this.destroy(err);
      return;
    }
    this.failure ??= err;
    this.settle?.reject(this.failure);
  }

  abortOn(signal: AbortSignal): void {
    const onAbort = () => this.cancel(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    this.detach = () => {
      signal.removeEventListener("abort", onAbort);
      this.detach = undefined;
    };
  }

  /**
   * Ends the body with `err`: a stream reader gets it as an error, a pump rejects with it. Unless a
   * stream reader is attached no 'error' event is emitted, as nobody would be listening.
   */
  cancel(err: Error): void {
    if (this.mode === "stream") {
      this.destroy(err);
      return;
    }
    this.release();
    if (this.ended || this.stopped) return;
    this.failure ??= err;
    this.settle?.reject(this.failure);
  }

  /**
   * Delivers the rest of the body to `sink` as views valid only during each call; resolves at the
   * end of the body. After the sink returns false, nothing more is read until `resume()`; views
   * already read are still delivered.
   */
  pump(sink: ViewSink): Promise<void> {
    if (this.mode !== "undecided") throw new Error("the body is already being read");
    this.mode = "sink";
    this.sink = sink;
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      let go = true;
      for (const b of this.held) go = sink(b) && go;
      this.held = [];
      if (this.failure) reject(this.failure);
      else if (this.ended || this.stopped) resolve();
      else if (!this.conn) reject(new Error("the response body was closed before its end"));
      else if (go) this.conn.resume();
    });
  }

  /** Lets a paused pump go on. */
  override resume(): this {
    if (this.mode === "sink") this.conn?.resume();
    else super.resume();
    return this;
  }

  /** Stops a pump early: the rest is not read, the connection is closed, the pump resolves. */
  stop(): void {
    this.release();
    if (this.ended || this.failure) return;
    this.stopped = true;
    this.settle?.resolve();
  }

  /** Reads and drops the rest of a short body so the connection can be kept; a long one is cut. */
  async dump(): Promise<void> {
    if (this.mode === "undecided") {
      let seen = 0;
      await this.pump((v) => {
        seen += v.length;
        if (seen > 128 * 1024) this.stop();
        return true;
      });
      return;
    }
    this.destroy();
  }

  private release(): void {
    const conn = this.conn;
    this.conn = undefined;
    this.detach?.();
    conn?.abandon();
    this.settled();
  }

  override _read(): void {
    if (this.mode === "undecided") {
      this.mode = "stream";
      const held = this.held;
      this.held = [];
      for (const b of held) this.push(b);
      if (this.failure) this.destroy(this.failure);
      else if (this.ended) this.push(null);
      else if (this.stopped || !this.conn)
        this.destroy(new Error("the response body was closed before its end"));
      else this.conn.resume();
      return;
    }
    this.conn?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.release();
    if (this.mode === "stream") {
      cb(err);
      return;
    }
    // Pumped or not yet taken: nobody listens for 'error'; a pump settles instead.
    if (!this.ended && !this.stopped) {
      this.failure ??= err ?? new Error("the response body was closed before its end");
      this.settle?.reject(this.failure);
    }
    cb(null);
  }
}
