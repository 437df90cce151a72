import { readFileSync } from "node:fs";
import { createServer as createHttp, type Server } from "node:http";
import { createServer as createHttps } from "node:https";
import type { Logger } from "pino";
import type { KagamiConfig } from "../config/config.ts";
import { enforceQuota, housekeep } from "../registry/housekeeping.ts";
import type { LocalRegistry } from "../registry/local.ts";
import { Stores } from "../registry/stores.ts";
import { Mirror } from "../sync/mirror.ts";
import { SyncScheduler } from "../sync/scheduler.ts";
import { AccessState } from "./access.ts";
import { createApp } from "./app.ts";
import { answerClientErrors } from "./client-errors.ts";
import { gcSchedule } from "./gc-schedule.ts";
import { watchConfig } from "./reload.ts";
import { applyHttpTimeouts } from "./timeouts.ts";

export interface RunningServer {
  server: Server;
  stores: Stores;
  url: string;
  /** Stops accepting, lets in-flight requests finish within the shutdown bound, closes the database. */
  close(): Promise<void>;
}

const purgeIntervalMs = 3_600_000;
const quotaCheckIntervalMs = 60_000;

export async function startServer(config: KagamiConfig, logger: Logger): Promise<RunningServer> {
  // Read before anything is opened: a missing certificate is then a failure with nothing to undo.
  const tls = config.http.tls
    ? { cert: readFileSync(config.http.tls.cert), key: readFileSync(config.http.tls.key) }
    : undefined;
  const stores = await Stores.open(config.storage);
  try {
    return await run(config, logger, stores, tls);
  } catch (err) {
    stores.close();
    throw err;
  }
}

async function run(
  config: KagamiConfig,
  logger: Logger,
  stores: Stores,
  tls: { cert: Buffer; key: Buffer } | undefined,
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
      await enforceQuota(h, { dryRun: false, now: Date.now(), busy: busyIn(h.store), logger }).catch(
        (err: unknown) => logger.warn({ err, store: h.store.root }, "cache quota check failed"),
      );
    }
    quotaRunning = false;
  }, quotaCheckIntervalMs);
  quotaTimer.unref();

  let access = AccessState.create(config.http, logger);
  mirror = config.sync ? new Mirror(config.sync, stores, logger) : undefined;
  let sync = mirror ? new SyncScheduler(mirror, stores, logger) : undefined;
  sync?.start();
  const stopWatching = watchConfig(config, logger, (next) => {
    access = AccessState.create(next.http, logger, access);
    if (JSON.stringify(next.sync) !== JSON.stringify(mirror?.config)) {
      const old = { mirror, sync };
      mirror = next.sync ? new Mirror(next.sync, stores, logger) : undefined;
      sync = mirror ? new SyncScheduler(mirror, stores, logger) : undefined;
      sync?.start();
      old.sync?.stop();
      void old.mirror?.close();
      logger.info({ registries: next.sync?.registries.length ?? 0 }, "sync configuration applied");
    }
  });
  const stopTimers = () => {
    clearInterval(timer);
    clearInterval(quotaTimer);
    stopGc?.();
    stopWatching();
  };
  const stopServices = async () => {
    access.close();
    sync?.stop();
    await mirror?.close();
  };
  const app = createApp({
    stores,
    config,
    logger,
    access: () => access,
    mirror: () => mirror,
    sync: () => sync,
  });
  const handler = app.callback();
  const server = tls ? createHttps(tls, handler) : createHttp(handler);
  answerClientErrors(server);
  // Large layers over slow links: never cut a healthy upload or download by a fixed request timeout.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 60_000;
  applyHttpTimeouts(server, config.http.readTimeoutMs, config.http.writeTimeoutMs);

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.http.port, config.http.address, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    // Nothing listens, so nothing may keep the process up: the config watcher and the sync
    // scheduler would, and a service manager would see a server that is not there as running.
    stopTimers();
    await stopServices();
    throw err;
  }
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : config.http.port;
  const scheme = config.http.tls ? "https" : "http";
  const host = config.http.address.includes(":") ? `[${config.http.address}]` : config.http.address;
  const url = `${scheme}://${host}:${port}`;
  logger.info({ url, storage: config.storage.rootDirectory }, "kagami listening");

  let closing: Promise<void> | undefined;
  return {
    server,
    stores,
    url,
    close() {
      closing ??= (async () => {
        stopTimers();
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        // Connections that finish their last request during the drain become idle too; close them as they do.
        server.closeIdleConnections();
        const reaper = setInterval(() => server.closeIdleConnections(), 100);
        const timeout = new Promise<"timeout">((resolve) =>
          setTimeout(() => resolve("timeout"), config.http.shutdownTimeoutMs).unref(),
        );
        if ((await Promise.race([done, timeout])) === "timeout") {
          logger.warn(
            { afterMs: config.http.shutdownTimeoutMs },
            "closing connections still open at shutdown",
          );
          server.closeAllConnections();
          await done;
        }
        clearInterval(reaper);
        await stopServices();
        stores.close();
        logger.info("kagami stopped");
      })();
      return closing;
    },
  };
}
