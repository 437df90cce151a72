import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Transform } from "node:stream";

/** What the proxy does to one request instead of passing it through untouched. */
export type Fault =
  | { kind: "status"; status: number }
  | { kind: "reset" }
  | { kind: "truncate"; afterBytes: number }
  | { kind: "corrupt" }
  | { kind: "slow"; bytesPerSecond: number };

export interface ProxyRequest {
  method: string;
  path: string;
}

/**
 * An HTTP proxy in front of a real registry that counts what passes and injects faults:
 * the test's view of "what did the upstream see".
 */
export class UpstreamProxy {
  readonly requests: ProxyRequest[] = [];
  /** Body bytes sent to clients, by path. */
  readonly bytesOut = new Map<string, number>();
  fault: ((req: ProxyRequest) => Fault | undefined) | undefined;
  /** Refuse every connection, like a host that is down. */
  down = false;
  url = "";
  host = "";
  private server!: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly target: string) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on("connection", (s) => {
      if (this.down) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    const port = (this.server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${port}`;
    this.host = `127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  /** Makes the upstream unreachable (and drops kept-alive connections). */
  goDown(): void {
    this.down = true;
    for (const s of this.sockets) s.destroy();
  }

  count(method: string, pathPart: string): number {
    return this.requests.filter((r) => r.method === method && r.path.includes(pathPart)).length;
  }

  reset(): void {
    this.requests.length = 0;
    this.bytesOut.clear();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const info = { method: req.method ?? "GET", path: req.url ?? "/" };
    this.requests.push(info);
    const fault = this.fault?.(info);
    if (fault?.kind === "status") {
      res.writeHead(fault.status, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNKNOWN", message: "injected failure" }] }));
      return;
    }
    if (fault?.kind === "reset") {
      req.socket.destroy();
      return;
    }
    const upstream = request(
      new URL(info.path, this.target),
      { method: info.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        let sent = 0;
        const path = info.path.split("?")[0]!;
        const tap = new Transform({
          transform: (chunk: Buffer, _e, cb) => {
            let out = chunk;
            if (fault?.kind === "truncate" && sent + chunk.length > fault.afterBytes) {
              out = chunk.subarray(0, Math.max(0, fault.afterBytes - sent));
              sent += out.length;
              this.bytesOut.set(path, (this.bytesOut.get(path) ?? 0) + out.length);
              cb(null, out);
              setImmediate(() => res.socket?.destroy());
              return;
            }
            if (fault?.kind === "corrupt") {
              out = Buffer.from(chunk);
              out[0] = out[0]! ^ 0xff;
            }
            sent += out.length;
            this.bytesOut.set(path, (this.bytesOut.get(path) ?? 0) + out.length);
            if (fault?.kind === "slow") {
              setTimeout(() => cb(null, out), (out.length / fault.bytesPerSecond) * 1000);
              return;
            }
            cb(null, out);
          },
        });
        up.pipe(tap).pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  }
}
