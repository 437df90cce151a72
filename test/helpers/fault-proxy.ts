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
 * - status: answers `status` itself (with a spec error body and `retryAfter` seconds if given);
 * - reset: destroys the connection before answering;
 * - truncate: forwards the upstream's headers, then cuts the connection after `afterBytes` of the body;
 * - corrupt: forwards everything but flips one byte of the body (at `afterBytes`, default the middle);
 * - short: forwards a body shorter by one byte with a Content-Length to match (a lying upstream);
 * - stall: forwards headers and `afterBytes` of the body, then sends nothing more.
 */
export type Fault =
  | { kind: "status"; status: number; retryAfter?: number }
  | { kind: "reset" }
  | { kind: "truncate"; afterBytes?: number }
  | { kind: "corrupt"; afterBytes?: number }
  | { kind: "short" }
  | { kind: "stall"; afterBytes?: number };

export interface FaultRule {
  method?: string;
  /** Matched against the request path (with query). */
  path: RegExp;
  fault: Fault;
  /** How many matching requests suffer the fault; undefined: all of them. */
  times?: number;
}

export interface FaultProxy {
  url: string;
  host: string;
  /** Every request seen: method, path and the fault applied. */
  log: { method: string; path: string; fault?: Fault["kind"] }[];
  setRules(rules: FaultRule[]): void;
  stop(): Promise<void>;
}

/** An HTTP proxy on a loopback port in front of `target` that injects faults by rule. */
export async function startFaultProxy(target: string, initial: FaultRule[] = []): Promise<FaultProxy> {
  const upstream = new URL(target);
  let rules = initial.map((r) => ({ ...r }));
  const log: FaultProxy["log"] = [];
  const sockets = new Set<Socket>();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    const method = req.method ?? "GET";
    const rule = rules.find(
      (r) =>
        (r.method === undefined || r.method === method) &&
        r.path.test(path) &&
        (r.times === undefined || r.times > 0),
    );
    if (rule && rule.times !== undefined) rule.times--;
    const fault = rule?.fault;
    log.push(fault ? { method, path, fault: fault.kind } : { method, path });

    if (fault?.kind === "reset") {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "status") {
      req.resume();
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
      res.writeHead(fault.status, headers);
      res.end(
        JSON.stringify({
          errors: [{ code: fault.status === 429 ? "TOOMANYREQUESTS" : "UNKNOWN", message: "injected fault" }],
        }),
      );
      return;
    }
    const out = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method,
        path,
        headers: req.headers,
      },
      (up) => {
        const len = Number(up.headers["content-length"]);
        const headers = { ...up.headers };
        if (!fault || method === "HEAD" || !(len > 0)) {
          res.writeHead(up.statusCode ?? 502, headers);
          up.pipe(res);
          return;
        }
        const at = Math.min(
          len - 1,
          "afterBytes" in fault && fault.afterBytes !== undefined ? fault.afterBytes : Math.floor(len / 2),
        );
        if (fault.kind === "short") headers["content-length"] = String(len - 1);
        res.writeHead(up.statusCode ?? 502, headers);
        let pos = 0;
        up.on("data", (chunk: Buffer) => {
          const start = pos;
          pos += chunk.length;
          if (fault.kind === "corrupt") {
            if (at >= start && at < pos) {
              chunk = Buffer.from(chunk);
              chunk[at - start] = chunk[at - start]! ^ 0x55;
            }
            res.write(chunk);
          } else if (fault.kind === "short") {
            res.write(pos >= len ? chunk.subarray(0, chunk.length - 1) : chunk);
          } else if (start < at) {
            res.write(chunk.subarray(0, Math.min(chunk.length, at - start)));
          }
          if ((fault.kind === "truncate" || fault.kind === "stall") && pos >= at) {
            up.destroy();
            if (fault.kind === "truncate") setTimeout(() => res.socket?.destroy(), 20);
          }
        });
        up.on("end", () => {
          if (fault.kind === "corrupt" || fault.kind === "short") res.end();
        });
      },
    );
    out.on("error", () => res.socket?.destroy());
    req.pipe(out);
  };

  const server: Server = createServer(handle);
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    log,
    setRules(next) {
      rules = next.map((r) => ({ ...r }));
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
