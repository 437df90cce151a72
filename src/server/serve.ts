import { readFileSync } from "node:fs";
import { createServer as createHttp, type RequestListener, type Server } from "node:http";
import { createServer as createHttps, type Server as HttpsServer } from "node:https";
import type { Logger } from "pino";
import { ArtifactError } from "../artifacts/errors.ts";
import type { KagamiConfig } from "../config/config.ts";
import { PrometheusMetrics } from "../metrics/prometheus.ts";
import { ClientAddressError } from "../redirect/client-ip.ts";
import { Redirector } from "../redirect/redirector.ts";
import { RedirectRules } from "../redirect/rules.ts";
import { enforceQuota, housekeep } from "../registry/housekeeping.ts";
import type { LocalRegistry } from "../registry/local.ts";
import { Stores } from "../registry/stores.ts";
import { Mirror } from "../sync/mirror.ts";
import { SyncScheduler } from "../sync/scheduler.ts";
import { AccessState } from "./access.ts";
import { createApp } from "./app.ts";
import { type ArtifactService, openArtifactService } from "./artifacts-service.ts";
import { answerClientErrors } from "./client-errors.ts";
import { gcSchedule } from "./gc-schedule.ts";
import { Health, storeChecks } from "./health.ts";
import { createRedirectorApp } from "./redirector-app.ts";
import { watchConfig, watchConfigNeedingRestart } from "./reload.ts";
import { applyHttpTimeouts } from "./timeouts.ts";
import { readTlsPair, type TlsPair, watchTlsFiles } from "./tls-reload.ts";

export interface RunningServer {
  server: Server;
  /** None in redirector mode, which stores nothing. */
  stores?: Stores;
  url: string;
  /** Stops accepting, lets in-flight requests finish within the shutdown bound, closes the database. */
  close(): Promise<void>;
}

const purgeIntervalMs = 3_600_000;
const quotaCheckIntervalMs = 60_000;

/** package.json's version, for kagami_build_info; "unknown" when it cannot be read. */
function kagamiVersion(): string {
  try {
    const url = new URL("../../package.json", import.meta.url);
    return (JSON.parse(readFileSync(url, "utf8")) as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
}

export async function startServer(config: KagamiConfig, logger: Logger): Promise<RunningServer> {
  // Read before anything is opened: a missing certificate is then a failure with nothing to undo.
  const tls = config.http.tls ? readTlsPair(config.http.tls) : undefined;
  if (config.redirect?.mode === "redirector") return startRedirector(config, logger, tls);
  // Network files are read before the store opens: a bad one stops the start with nothing to undo.
  const redirects = config.redirect ? loadRedirectRules(config, logger) : undefined;
  const stores = await Stores.open(config.storage);
  try {
    return await run(config, logger, stores, tls, redirects);
  } catch (err) {
    stores.close();
    throw err;
  }
}

async function run(
  config: KagamiConfig,
  logger: Logger,
  stores: Stores,
  tls: TlsPair | undefined,
  redirects: RedirectRules | undefined,
): Promise<RunningServer> {
  const purge = async () => {
    for (const store of stores.all()) {
      try {
        const n = await store.uploads.purge(config.storage.uploadMaxAgeMs);
        if (n > 0) logger.info({ removed: n, store: store.root }, "purged abandoned uploads");
      } catch (err) {
        logger.warn({ err, store: store.root }, "upload purge failed");
      }
    }
  };
  await purge();
  const timer = setInterval(purge, Math.min(purgeIntervalMs, config.storage.uploadMaxAgeMs));
  timer.unref();
  let mirror: Mirror | undefined;
  const busyIn = (store: LocalRegistry) => (digest: string) => mirror?.isFetching(store, digest) ?? false;
  const gc = async () => {
    for (const h of stores.housekeeping) {
      try {
        const r = await housekeep(h, {
          dryRun: false,
          gcDelayMs: config.storage.gcDelayMs,
          now: Date.now(),
          busy: busyIn(h.store),
          logger,
        });
        logger.info(
          { ...r.gc, retention: r.retention.length, store: h.store.root },
          "garbage collection finished",
        );
        metrics.storageChanged();
      } catch (err) {
        logger.warn({ err, store: h.store.root }, "garbage collection failed");
      }
    }
  };
  const stopGc = config.storage.gc
    ? gcSchedule(gc, config.storage.gcIntervalMs, config.storage.gcTimeWindow, logger)
    : undefined;
  // The quota is not left to the daily collection: a mirror can fill a disk in an hour.
  let quotaRunning = false;
  const quotaTimer = setInterval(async () => {
    if (quotaRunning) return;
    quotaRunning = true;
    for (const h of stores.housekeeping) {
      if (!h.cacheQuota) continue;
      await enforceQuota(h, { dryRun: false, now: Date.now(), busy: busyIn(h.store), logger }).then(
        () => metrics.storageChanged(),
        (err: unknown) => logger.warn({ err, store: h.store.root }, "cache quota check failed"),
      );
    }
    quotaRunning = false;
  }, quotaCheckIntervalMs);
  quotaTimer.unref();

  let access = AccessState.create(config.http, logger);
  const metrics = new PrometheusMetrics({
    usage: () => stores.all().flatMap((s) => s.usage()),
    busy: (): boolean => (mirror?.activeFetches ?? 0) > 0,
    version: kagamiVersion(),
  });
  const health = new Health(storeChecks(stores), logger);
  mirror = config.sync ? new Mirror(config.sync, stores, logger, metrics) : undefined;
  let sync = mirror ? new SyncScheduler(mirror, stores, logger) : undefined;
  sync?.start();
  const stopWatching = watchConfig(config, logger, (next) => {
    access = AccessState.create(next.http, logger, access);
    stores.applyHousekeeping(next.storage);
    if (JSON.stringify(next.sync) !== JSON.stringify(mirror?.config)) {
      const old = { mirror, sync };
      mirror = next.sync ? new Mirror(next.sync, stores, logger, metrics) : undefined;
      sync = mirror ? new SyncScheduler(mirror, stores, logger) : undefined;
      sync?.start();
      old.sync?.stop();
      void old.mirror?.close();
      logger.info({ registries: next.sync?.registries.length ?? 0 }, "sync configuration applied");
    }
  });
  let stopTlsWatch: (() => void) | undefined;
  const stopTimers = () => {
    clearInterval(timer);
    clearInterval(quotaTimer);
    stopGc?.();
    stopWatching();
    stopTlsWatch?.();
  };
  let artifacts: ArtifactService | undefined;
  const stopServices = async () => {
    await artifacts?.close();
    access.close();
    sync?.stop();
    await mirror?.close();
  };
  try {
    // Before the registry listens, so files are served by the time the registry answers.
    if (config.artifacts) {
      artifacts = await openArtifactService(config.artifacts, {
        logger,
        ...(redirects ? { redirectFor: fileRedirect(redirects) } : {}),
        tls,
        shutdownTimeoutMs: config.http.shutdownTimeoutMs,
      });
    }
  } catch (err) {
    stopTimers();
    await stopServices();
    throw err;
  }
  const app = createApp({
    artifacts,
    stores,
    config,
    logger,
    access: () => access,
    mirror: () => mirror,
    sync: () => sync,
    redirects,
    metrics,
    health,
  });
  const http = await listen(config, app.callback(), tls).catch(async (err: unknown) => {
    // Nothing listens, so nothing may keep the process up: the config watcher and the sync
    // scheduler would, and a service manager would see a server that is not there as running.
    stopTimers();
    await stopServices();
    throw err;
  });
  const { server, url } = http;
  stopTlsWatch = watchAllTls(config, tls, logger, server as HttpsServer, artifacts);
  health.markStarted();
  logger.info({ url, storage: config.storage.rootDirectory }, "kagami listening");

  let closing: Promise<void> | undefined;
  return {
    server,
    stores,
    url,
    close() {
      closing ??= (async () => {
        stopTimers();
        await drain(server, config, logger);
        await stopServices();
        stores.close();
        logger.info("kagami stopped");
      })();
      return closing;
    },
  };
}

function loadRedirectRules(config: KagamiConfig, logger: Logger): RedirectRules {
  return RedirectRules.load(config.redirect!, (url, err) =>
    logger.warn({ url, err: (err as Error).message }, "blob copy check failed"),
  );
}

/** Serves `handler` on the configured address. */
async function listen(config: KagamiConfig, handler: RequestListener, tls: TlsPair | undefined) {
  const server = tls ? createHttps(tls, handler) : createHttp(handler);
  answerClientErrors(server);
  // Large layers over slow links: never cut a healthy upload or download by a fixed request timeout.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 60_000;
  applyHttpTimeouts(server, config.http.readTimeoutMs, config.http.writeTimeoutMs);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.http.port, config.http.address, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : config.http.port;
  const scheme = config.http.tls ? "https" : "http";
  const host = config.http.address.includes(":") ? `[${config.http.address}]` : config.http.address;
  return { server, url: `${scheme}://${host}:${port}` };
}

/** Stops accepting and lets in-flight requests finish within http.shutdownTimeout, then closes what remains. */
async function drain(server: Server, config: KagamiConfig, logger: Logger): Promise<void> {
  const done = new Promise<void>((resolve) => server.close(() => resolve()));
  // Connections that finish their last request during the drain become idle too; close them as they do.
  server.closeIdleConnections();
  const reaper = setInterval(() => server.closeIdleConnections(), 100);
  const timeout = new Promise<"timeout">((resolve) =>
    setTimeout(() => resolve("timeout"), config.http.shutdownTimeoutMs).unref(),
  );
  if ((await Promise.race([done, timeout])) === "timeout") {
    logger.warn({ afterMs: config.http.shutdownTimeoutMs }, "closing connections still open at shutdown");
    server.closeAllConnections();
    await done;
  }
  clearInterval(reaper);
}

/** Redirector mode: no store, no sync; every request is answered with a redirect (or refused). */
async function startRedirector(
  config: KagamiConfig,
  logger: Logger,
  tls: TlsPair | undefined,
): Promise<RunningServer> {
  const rules = loadRedirectRules(config, logger);
  const redirector = new Redirector(config.redirect!, rules);
  // extensions.artifacts was accepted in this mode but never started: files configured were
  // silently not served. They are served as in mirror mode, the redirect rules applying.
  const artifacts = config.artifacts
    ? await openArtifactService(config.artifacts, {
        logger,
        redirectFor: fileRedirect(rules),
        tls,
        shutdownTimeoutMs: config.http.shutdownTimeoutMs,
      })
    : undefined;
  let listening: Awaited<ReturnType<typeof listen>>;
  try {
    listening = await listen(config, createRedirectorApp(redirector, logger, artifacts).callback(), tls);
  } catch (err) {
    await artifacts?.close();
    throw err;
  }
  const { server, url } = listening;
  const stopTls = watchAllTls(config, tls, logger, server as HttpsServer, artifacts);
  const stopWatching = watchConfigNeedingRestart(config, logger);
  logger.info({ url, upstream: config.redirect!.upstream?.url }, "kagami redirector listening");
  let closing: Promise<void> | undefined;
  return {
    server,
    url,
    close() {
      closing ??= (async () => {
        stopTls();
        stopWatching();
        await drain(server, config, logger);
        await artifacts?.close();
        logger.info("kagami stopped");
      })();
      return closing;
    },
  };
}

/**
 * Puts renewed certificates into service on every TLS listener: the registry's (or redirector's)
 * and the artifacts' own, which serves the same certificate; left out, that one would keep the old
 * certificate until a restart, and fail every download once it expired. Returns the stop.
 */
function watchAllTls(
  config: KagamiConfig,
  tls: TlsPair | undefined,
  logger: Logger,
  server: HttpsServer,
  artifacts: ArtifactService | undefined,
): () => void {
  if (!config.http.tls || !tls) return () => {};
  const stops = [watchTlsFiles(server, config.http.tls, tls, logger)];
  if (artifacts?.tlsServer)
    stops.push(
      watchTlsFiles(artifacts.tlsServer, config.http.tls, tls, logger.child({ service: "artifacts" })),
    );
  return () => {
    for (const stop of stops) stop();
  };
}

/** Release files go to the copy named by the client's rule (`artifactsBaseUrl`) when it has them. */
function fileRedirect(rules: RedirectRules) {
  return async (path: string, peer: string | undefined, forwarded: string | undefined) => {
    let ip: string;
    try {
      ip = rules.clientAddress(peer, forwarded);
    } catch (err) {
      if (!(err instanceof ClientAddressError)) throw err;
      throw new ArtifactError(400, `Bad Request: ${err.message}`);
    }
    return rules.fileTarget(ip, path);
  };
}
