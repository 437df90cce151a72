/**
 * The artifact file service as the server runs it: the handler the registry's listener mounts
 * under `pathPrefix`, and the listener of its own when `port` is set.
 */
import { mkdir } from "node:fs/promises";
import { createServer as createHttp, type Server } from "node:http";
import { createServer as createHttps, type Server as HttpsServer } from "node:https";
import type { Logger } from "pino";
import { ArtifactPuller } from "../artifacts/pull-through.ts";
import type { ArtifactsConfig } from "../config/artifacts.ts";
import { type ArtifactHandler, type ArtifactServiceOptions, artifactHandler } from "./artifacts.ts";
import { answerClientErrors } from "./client-errors.ts";

export interface ArtifactService {
  /** Mounted on the registry's listener below this path, when set. */
  prefix?: string;
  handle: ArtifactHandler;
  /** The listener of its own, when configured. */
  url?: string;
  /** That listener, when it serves TLS: the registry's certificate rotation must reach it too. */
  tlsServer?: HttpsServer;
  close(): Promise<void>;
}

export async function openArtifactService(
  config: ArtifactsConfig,
  opts: {
    logger: Logger;
    tls?: { cert: Buffer; key: Buffer };
    shutdownTimeoutMs: number;
    redirectFor?: ArtifactServiceOptions["redirectFor"];
  },
): Promise<ArtifactService> {
  await mkdir(config.rootDirectory, { recursive: true });
  const logger = opts.logger.child({ service: "artifacts" });
  let puller: ArtifactPuller | undefined;
  if (config.upstream) {
    puller = new ArtifactPuller(config.rootDirectory, config.upstream, logger);
    await puller.init();
  }
  const common = { root: config.rootDirectory, listing: config.listing, puller, logger };
  const redirectFor = config.redirect ? opts.redirectFor : undefined;
  const service: ArtifactService = {
    handle: await artifactHandler({ ...common, prefix: config.pathPrefix ?? "", redirectFor }),
    close: async () => {},
  };
  if (config.pathPrefix !== undefined) service.prefix = config.pathPrefix;
  if (!config.listener) return service;

  const own = await artifactHandler({ ...common, prefix: "", redirectFor });
  const handler = (req: Parameters<ArtifactHandler>[0], res: Parameters<ArtifactHandler>[1]) => {
    // The same access log line the registry's listener writes (query strings never logged).
    const started = process.hrtime.bigint();
    const remote = req.socket.remoteAddress;
    res.once("close", () =>
      logger.info(
        {
          method: req.method,
          path: (req.url ?? "").split("?")[0]!.slice(0, 1000),
          status: res.statusCode,
          bytesOut: Number(res.getHeader("content-length") ?? 0),
          durationMs: Number(process.hrtime.bigint() - started) / 1e6,
          remote,
          aborted: !res.writableFinished,
        },
        "request",
      ),
    );
    void own(req, res);
  };
  const server: Server = opts.tls ? createHttps(opts.tls, handler) : createHttp(handler);
  if (opts.tls) service.tlsServer = server as HttpsServer;
  answerClientErrors(server);
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  const { address, port } = config.listener;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const host = address.includes(":") ? `[${address}]` : address;
  service.url = `${opts.tls ? "https" : "http"}://${host}:${typeof addr === "object" && addr ? addr.port : port}`;
  logger.info({ url: service.url, root: config.rootDirectory }, "artifact files listening");
  service.close = async () => {
    const done = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const timer = setTimeout(() => server.closeAllConnections(), opts.shutdownTimeoutMs);
    await done;
    clearTimeout(timer);
  };
  return service;
}
