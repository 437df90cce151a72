import pino from "pino";
import { ConfigError, defaults, loadConfigFile } from "../config/config.ts";
import { Stores } from "../registry/stores.ts";
import { Mirror } from "../sync/mirror.ts";
import { type SyncRunSummary, SyncScheduler } from "../sync/scheduler.ts";
import { parseFlags, UsageError } from "./args.ts";
import { createProgress, formatBytes } from "./progress.ts";

export const syncUsage = `Usage: kagami sync [--config FILE] [--registry URL] [--dry-run]

Runs one periodic sync pass now, for every registry of extensions.sync that has a content list
(or only the one whose URL is given), and prints a summary. Works beside a running server.

  --config FILE     the server's configuration (zot format)
  --registry URL    only this upstream (one of its urls)
  --dry-run         list what would be copied, copy nothing
  --quiet           no progress bar`;

export async function syncCommand(argv: string[]): Promise<number> {
  let flags: ReturnType<typeof parseFlags>["flags"];
  try {
    ({ flags } = parseFlags(argv, {
      config: { type: "string" },
      registry: { type: "string" },
      "dry-run": { type: "boolean" },
      quiet: { type: "boolean" },
      help: { type: "boolean" },
    }));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kagami sync: ${err.message}\n\n${syncUsage}\n`);
      return 2;
    }
    throw err;
  }
  if (flags.help) {
    process.stdout.write(`${syncUsage}\n`);
    return 0;
  }
  const { config } = typeof flags.config === "string" ? loadConfigFile(flags.config) : defaults();
  if (!config.sync || config.sync.registries.length === 0) {
    throw new ConfigError([
      { path: "extensions.sync.registries", message: "no upstream registry is configured" },
    ]);
  }
  const wanted = typeof flags.registry === "string" ? flags.registry.replace(/\/+$/, "") : undefined;
  const indexes = config.sync.registries
    .map((r, i) => ({ r, i }))
    .filter(
      ({ r }) =>
        r.content.length > 0 && (!wanted || r.urls.some((u) => u === wanted || new URL(u).host === wanted)),
    );
  if (indexes.length === 0) {
    process.stderr.write(
      `kagami sync: no registry ${wanted ? `with url ${wanted} ` : ""}has a content list to sync (on-demand-only upstreams are not polled)\n`,
    );
    return 2;
  }
  const logger = pino({ level: config.log.level === "silent" ? "silent" : "warn" }, pino.destination(2));
  const stores = await Stores.open(config.storage);
  const mirror = new Mirror(config.sync, stores, logger);
  const scheduler = new SyncScheduler(mirror, stores, logger);
  const progress = createProgress(process.stderr, { quiet: flags.quiet === true });
  const dryRun = flags["dry-run"] === true;
  let failed = false;
  try {
    for (const { r, i } of indexes) {
      const summary: SyncRunSummary = await scheduler.run(i, {
        dryRun,
        onEvent: (e) => progress.onEvent(e),
        onImage: (img) => {
          if (
            img.action === "copied" ||
            img.action === "would copy" ||
            img.action === "failed" ||
            img.action === "skipped unsigned"
          ) {
            progress.finish(undefined, "");
            process.stdout.write(
              `${img.action.padEnd(16)} ${img.upstream}:${img.tag} -> ${img.local}:${img.tag}${img.error ? `  (${img.error})` : ""}\n`,
            );
          }
        },
      });
      progress.finish(undefined, "");
      process.stdout.write(
        `${r.urls[0]}: ${summary.repos} repositories, ${summary.tagsChecked} tags checked, ${summary.copied} copied (${formatBytes(summary.bytes)}), ${summary.errors.length} errors, ${(summary.durationMs / 1000).toFixed(1)} s${dryRun ? " (dry run)" : ""}\n`,
      );
      for (const e of summary.errors) process.stdout.write(`  error: ${e}\n`);
      if (summary.errors.length > 0) failed = true;
    }
  } finally {
    await mirror.close();
    stores.close();
  }
  return failed ? 1 : 0;
}
