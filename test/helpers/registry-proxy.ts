import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * What the proxy does to a matching exchange:
 * - status: answers `status` itself (with a spec error body, `retryAfter` seconds and `headers` if given);
 * - reset: destroys the connection before answering;
 * - truncate: forwards the upstream's headers, then cuts the connection after `afterBytes` of the body
 *   (default the middle); a body no longer than that passes whole, so a resumed Range request can succeed;
 * - corrupt: forwards everything but flips one byte of the body (at `afterBytes`, default the middle);
 * - short: forwards a body shorter by one byte with a Content-Length to match (a lying upstream);
 * - stall: forwards headers and `afterBytes` of the body (default the middle), then sends nothing more;
 * - slow: forwards everything at `bytesPerSecond`;
 * - delay: forwards the request after `ms`, so requests under way overlap for a while.
 * All but status and reset act on the body, and all but slow need its Content-Length: a body of unknown
 * length passes untouched.
 */
export type Fault =
  | { kind: "status"; status: number; retryAfter?: number; headers?: Record<string, string> }
  | { kind: "reset" }
  | { kind: "truncate"; afterBytes?: number }
  | { kind: "corrupt"; afterBytes?: number }
  | { kind: "short" }
  | { kind: "stall"; afterBytes?: number }
  | { kind: "slow"; bytesPerSecond: number }
  | { kind: "delay"; ms: number };

const faultCode: Record<number, string> = { 401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS" };

export interface FaultRule {
  method?: string;
  /** Tested against the request path with its query; a string must occur in it. */
  path: RegExp | string;
  fault: Fault;
  /** How many matching requests suffer the fault; undefined: all of them. */
  times?: number;
}

export interface ProxiedRequest {
  method: string;
  /** With the query. */
  path: string;
  fault?: Fault["kind"];
  /** Date.now() when the request arrived. */
  at: number;
}

/**
 * An HTTP proxy on a loopback port in front of a real registry: the test's view of what the upstream
 * saw (every request, the body bytes sent), and the faults it injects by rule.
 */
export class RegistryProxy {
  readonly url: string;
  readonly host: string;
  readonly log: ProxiedRequest[] = [];
  /** Body bytes sent to clients, by path without the query. */
  readonly bytesOut = new Map<string, number>();
  /** Most exchanges under way at once (request seen, response not yet finished) since the last clear. */
  maxInFlight = 0;
  private inFlight = 0;
  private rules: FaultRule[] = [];
  private refusing = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly target: URL,
  ) {
    const port = (server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${port}`;
    this.host = `127.0.0.1:${port}`;
    server.on("request", (req: IncomingMessage, res: ServerResponse) => this.handle(req, res));
    server.on("connection", (s: Socket) => {
      if (this.refusing) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
  }

  static async start(target: string, rules: FaultRule[] = []): Promise<RegistryProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const proxy = new RegistryProxy(server, new URL(target));
    proxy.setRules(rules);
    return proxy;
  }

  /** Replaces the rules; the first one that matches a request (and has `times` left) applies. */
  setRules(rules: FaultRule[]): void {
    this.rules = rules.map((r) => ({ ...r }));
  }

  /** While true, every connection is refused, like a host that is down; going down drops open ones. */
  get down(): boolean {
    return this.refusing;
  }

  set down(down: boolean) {
    this.refusing = down;
    if (down) for (const s of this.sockets) s.destroy();
  }

  count(method: string, pathPart: string): number {
    return this.log.filter((r) => r.method === method && r.path.includes(pathPart)).length;
  }

  /** Forgets the requests and bytes seen so far. */
  clear(): void {
    this.log.length = 0;
    this.bytesOut.clear();
    this.maxInFlight = this.inFlight;
  }

  /** Client connections open now (in use or idle). */
  get openConnections(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private faultFor(method: string, path: string): Fault | undefined {
    const rule = this.rules.find(
      (r) =>
        (r.method === undefined || r.method === method) &&
        (typeof r.path === "string" ? path.includes(r.path) : r.path.test(path)) &&
        (r.times === undefined || r.times > 0),
    );
    if (rule?.times !== undefined) rule.times--;
    return rule?.fault;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? "/";
    const method = req.method ?? "GET";
    const fault = this.faultFor(method, path);
    const at = Date.now();
    this.log.push(fault ? { method, path, fault: fault.kind, at } : { method, path, at });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    res.once("close", () => this.inFlight--);
    if (fault?.kind === "delay") {
      setTimeout(() => this.forward(req, res, method, path, undefined), fault.ms);
      return;
    }

    if (fault?.kind === "reset") {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "status") {
      req.resume();
      const headers: Record<string, string> = { "content-type": "application/json", ...fault.headers };
      if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
      res.writeHead(fault.status, headers);
      res.end(
        JSON.stringify({
          errors: [{ code: faultCode[fault.status] ?? "UNKNOWN", message: "injected fault" }],
        }),
      );
      return;
    }
    this.forward(req, res, method, path, fault);
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    path: string,
    fault: Fault | undefined,
  ): void {
    const out = httpRequest(
      { host: this.target.hostname, port: this.target.port, method, path, headers: req.headers },
      (up) => {
        const key = path.split("?")[0]!;
        this.relay(up, res, method === "HEAD" ? undefined : fault, (n) =>
          this.bytesOut.set(key, (this.bytesOut.get(key) ?? 0) + n),
        );
      },
    );
    out.on("error", () => res.socket?.destroy());
    req.pipe(out);
  }

  /** Forwards the upstream's answer, doing to its body what `fault` says. */
  private relay(
    up: IncomingMessage,
    res: ServerResponse,
    fault: Fault | undefined,
    sent: (bytes: number) => void,
  ): void {
    const len = Number(up.headers["content-length"]);
    const sized = len > 0 ? fault : undefined;
    const place = (afterBytes: number | undefined) => afterBytes ?? Math.floor(len / 2);
    const flipAt = sized?.kind === "corrupt" ? Math.min(len - 1, place(sized.afterBytes)) : -1;
    let cutAt = Number.POSITIVE_INFINITY;
    if ((sized?.kind === "truncate" || sized?.kind === "stall") && place(sized.afterBytes) < len) {
      cutAt = place(sized.afterBytes);
    }
    const headers = { ...up.headers };
    if (sized?.kind === "short") headers["content-length"] = String(len - 1);
    res.writeHead(up.statusCode ?? 502, headers);
    res.on("close", () => up.destroy());

    let pos = 0;
    up.on("data", (chunk: Buffer) => {
      const start = pos;
      pos += chunk.length;
      let part = chunk;
      if (flipAt >= start && flipAt < pos) {
        part = Buffer.from(chunk);
        part[flipAt - start] = part[flipAt - start]! ^ 0x55;
      } else if (sized?.kind === "short" && pos >= len) {
        part = chunk.subarray(0, chunk.length - 1);
      } else if (pos >= cutAt) {
        part = chunk.subarray(0, cutAt - start);
      }
      sent(part.length);
      if (pos >= cutAt) {
        up.destroy();
        // Destroyed only once the bytes before the cut are out, so the client can resume from there.
        if (sized?.kind === "truncate") res.write(part, () => res.socket?.destroy());
        else res.write(part);
        return;
      }
      const drained = res.write(part);
      const delay = fault?.kind === "slow" ? (part.length / fault.bytesPerSecond) * 1000 : 0;
      if (drained && delay === 0) return;
      up.pause();
      let waits = (drained ? 0 : 1) + (delay > 0 ? 1 : 0);
      const resume = () => {
        if (--waits === 0) up.resume();
      };
      if (!drained) res.once("drain", resume);
      if (delay > 0) setTimeout(resume, delay);
    });
    up.on("end", () => res.end());
  }
}
