/**
 * A transparent HTTP proxy in front of an upstream registry that counts what a mirror fetches:
 * requests by kind and blob bytes by digest. It tells how many times 32 clients pulling one uncached
 * image made the mirror go upstream.
 */
import { Agent, createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface UpstreamCounts {
  requests: number;
  manifestRequests: number;
  /** GET requests per blob digest. */
  blobGets: Record<string, number>;
  /** Body bytes of blob GETs per digest. */
  blobBytes: Record<string, number>;
}

export class CountingProxy {
  counts: UpstreamCounts = CountingProxy.empty();

  private constructor(
    private readonly server: Server,
    private readonly agent: Agent,
    readonly url: string,
  ) {}

  private static empty(): UpstreamCounts {
    return { requests: 0, manifestRequests: 0, blobGets: {}, blobBytes: {} };
  }

  static async start(upstream: string): Promise<CountingProxy> {
    const target = new URL(upstream);
    const agent = new Agent({ keepAlive: true, maxSockets: 256 });
    let self: CountingProxy | undefined;
    const server = createServer((req, res) => {
      const counts = self!.counts;
      counts.requests++;
      const path = req.url ?? "/";
      const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path.split("?")[0]!)?.[1];
      if (/\/manifests\//.test(path)) counts.manifestRequests++;
      const isBlobGet = blob !== undefined && req.method === "GET";
      if (isBlobGet) counts.blobGets[blob] = (counts.blobGets[blob] ?? 0) + 1;
      const up = request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path,
          headers: { ...req.headers, host: target.host },
          agent,
        },
        (ures) => {
          res.writeHead(ures.statusCode ?? 502, ures.headers);
          if (isBlobGet) {
            ures.on("data", (c: Buffer) => {
              counts.blobBytes[blob] = (counts.blobBytes[blob] ?? 0) + c.length;
            });
          }
          ures.pipe(res);
          ures.on("error", () => res.destroy());
        },
      );
      up.on("error", () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      res.on("close", () => {
        if (!res.writableFinished) up.destroy();
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    self = new CountingProxy(server, agent, `http://127.0.0.1:${port}`);
    return self;
  }

  reset(): void {
    this.counts = CountingProxy.empty();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }
}
