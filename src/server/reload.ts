import { unwatchFile, watchFile } from "node:fs";
import type { Logger } from "pino";
import { ConfigError, type KagamiConfig, loadConfigFile } from "../config/config.ts";

/** Fields that only take effect on restart; a change to them is logged, not applied. */
function restartFields(a: KagamiConfig, b: KagamiConfig): string[] {
  const out: string[] = [];
  if (a.storage.rootDirectory !== b.storage.rootDirectory) out.push("storage.rootDirectory");
  // Retention and cacheQuota are applied on reload (Stores.applyHousekeeping); the stores and the
  // collection's schedule are set up once.
  const layout = (c: KagamiConfig) =>
    JSON.stringify((c.storage.subPaths ?? []).map((sp) => [sp.prefix, sp.rootDirectory]));
  if (layout(a) !== layout(b)) out.push("storage.subPaths");
  for (const f of ["gc", "gcDelayMs", "gcIntervalMs", "gcTimeWindow"] as const)
    if (JSON.stringify(a.storage[f]) !== JSON.stringify(b.storage[f]))
      out.push(`storage.${f.replace(/Ms$/, "")}`);
  if (a.http.address !== b.http.address) out.push("http.address");
  if (a.http.port !== b.http.port) out.push("http.port");
  if (JSON.stringify(a.http.tls) !== JSON.stringify(b.http.tls)) out.push("http.tls");
  if (JSON.stringify(a.log) !== JSON.stringify(b.log)) out.push("log");
  if (JSON.stringify(a.redirect) !== JSON.stringify(b.redirect)) out.push("extensions.redirect");
  if (JSON.stringify(a.artifacts) !== JSON.stringify(b.artifacts)) out.push("extensions.artifacts");
  if (JSON.stringify(a.metrics) !== JSON.stringify(b.metrics)) out.push("extensions.metrics");
  return out;
}

/**
 * Watches the config file and hands each valid new version to `apply`; an invalid edit is logged
 * and the running configuration stays. Polling survives editors that replace the file.
 */
export function watchConfig(
  current: KagamiConfig,
  logger: Logger,
  apply: (next: KagamiConfig) => void,
  intervalMs = 1000,
): () => void {
  const path = current.source;
  if (!path) return () => {};
  let running = current;
  watchFile(path, { interval: intervalMs }, (st) => {
    if (st.nlink === 0) return;
    try {
      const { config, warnings } = loadConfigFile(path);
      for (const w of warnings) logger.debug({ field: w.path }, `config: ${w.path}: ${w.message}`);
      const pending = restartFields(running, config);
      if (pending.length > 0)
        logger.warn({ fields: pending }, "config changes that need a restart were not applied");
      apply(config);
      running = config;
      logger.info({ file: path }, "configuration reloaded");
    } catch (err) {
      const msg = err instanceof ConfigError ? err.message : String(err);
      logger.error({ file: path }, `configuration not reloaded, keeping the running one: ${msg}`);
    }
  });
  return () => unwatchFile(path);
}

/**
 * Redirector mode builds everything once at start, so an edited file is applied on restart only;
 * saying so is better than a server that silently keeps the old rules.
 */
export function watchConfigNeedingRestart(
  current: KagamiConfig,
  logger: Logger,
  intervalMs = 1000,
): () => void {
  const path = current.source;
  if (!path) return () => {};
  watchFile(path, { interval: intervalMs }, (st) => {
    if (st.nlink === 0) return;
    logger.warn({ file: path }, "configuration changed: redirector mode applies changes on restart");
  });
  return () => unwatchFile(path);
}
