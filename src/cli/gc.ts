import { defaults, loadConfigFile } from "../config/config.ts";
import { parseDuration } from "../config/duration.ts";
import { type HousekeepingReport, housekeep } from "../registry/housekeeping.ts";
import { Stores } from "../registry/stores.ts";
import { parseFlags, UsageError } from "./args.ts";
import { formatBytes } from "./progress.ts";

export const gcUsage = `Usage: kagami gc [--config FILE] [--delay DURATION] [--dry-run]

In every store: applies storage.retention (zot's policies), evicts least recently pulled mirrored
images while the store is over its cacheQuota, then removes blobs that no manifest references and
that are older than storage.gcDelay (or --delay, a Go duration such as 0s or 1h). Safe beside a
running server: content younger than the delay, such as a push in progress, is never touched, nor
an image pulled within cacheQuota.keepPulledWithin.

--dry-run prints what retention and the quota would remove and changes nothing.`;

export async function gcCommand(argv: string[]): Promise<number> {
  let flags: ReturnType<typeof parseFlags>["flags"];
  try {
    ({ flags } = parseFlags(argv, {
      config: { type: "string" },
      delay: { type: "string" },
      "dry-run": { type: "boolean" },
      help: { type: "boolean" },
    }));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kagami gc: ${err.message}\n\n${gcUsage}\n`);
      return 2;
    }
    throw err;
  }
  if (flags.help) {
    process.stdout.write(`${gcUsage}\n`);
    return 0;
  }
  const { config } = typeof flags.config === "string" ? loadConfigFile(flags.config) : defaults();
  let delay = config.storage.gcDelayMs;
  if (typeof flags.delay === "string") {
    const d = parseDuration(flags.delay);
    if (d === undefined) {
      process.stderr.write(`kagami gc: --delay '${flags.delay}' is not a Go duration such as 30m or 0s\n`);
      return 2;
    }
    delay = d;
  }
  const dryRun = flags["dry-run"] === true;
  const stores = await Stores.open(config.storage);
  try {
    for (const h of stores.housekeeping) {
      const r = await housekeep(h, { dryRun, gcDelayMs: delay, now: Date.now() });
      process.stdout.write(describe(r));
    }
  } finally {
    stores.close();
  }
  return 0;
}

function describe(r: HousekeepingReport): string {
  const lines: string[] = [];
  const retention = r.retentionApplied ? "retention" : "retention (dry run)";
  for (const a of r.retention) {
    const what = a.kind === "tag" ? `tag ${a.repo}:${a.tag} (${a.digest})` : `manifest ${a.repo}@${a.digest}`;
    lines.push(
      `${r.root}: ${retention}: ${r.retentionApplied ? "deleted" : "would delete"} ${what}: ${a.reason}`,
    );
  }
  if (r.quota) {
    const q = r.quota;
    const quota = r.quotaApplied ? "cache quota" : "cache quota (dry run)";
    lines.push(
      `${r.root}: ${quota}: ${formatBytes(q.mirroredBytes)} mirrored, ${formatBytes(q.needBytes)} to free` +
        (q.freeBytes !== undefined ? `, ${formatBytes(q.freeBytes)} free on disk` : ""),
    );
    for (const e of q.evict) {
      const tags = e.tags.length > 0 ? ` (${e.tags.join(", ")})` : "";
      lines.push(
        `${r.root}: ${quota}: ${r.quotaApplied ? "evicted" : "would evict"} ${e.repo}@${e.digest}${tags}, ` +
          `${formatBytes(e.bytes)}, last pulled ${new Date(e.lastUsed).toISOString()}`,
      );
    }
    if (q.freedBytes < q.needBytes) {
      lines.push(
        `${r.root}: ${quota}: cannot be met, ${formatBytes(q.needBytes - q.freedBytes)} more must go but only ` +
          "locally pushed, recently pulled or in-flight content is left",
      );
    }
  }
  if (r.gc) {
    lines.push(
      `${r.root}: ${r.gc.blobsRemoved} blobs removed (${formatBytes(r.gc.bytesFreed)}), ${r.gc.linksRemoved} repository links removed`,
    );
  } else lines.push(`${r.root}: dry run: garbage collection skipped`);
  return `${lines.join("\n")}\n`;
}
