import { defaults, loadConfigFile } from "../config/config.ts";
import { parseDuration } from "../config/duration.ts";
import { Stores } from "../registry/stores.ts";
import { parseFlags, UsageError } from "./args.ts";
import { formatBytes } from "./progress.ts";

export const gcUsage = `Usage: kagami gc [--config FILE] [--delay DURATION]

Removes blobs that no manifest references and that are older than storage.gcDelay (or --delay,
a Go duration such as 0s or 1h), in every store. Safe beside a running server: content younger
than the delay, such as a push in progress, is never touched.`;

export async function gcCommand(argv: string[]): Promise<number> {
  let flags: ReturnType<typeof parseFlags>["flags"];
  try {
    ({ flags } = parseFlags(argv, {
      config: { type: "string" },
      delay: { type: "string" },
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
  const stores = await Stores.open(config.storage);
  try {
    for (const store of stores.all()) {
      const r = await store.collectGarbage(delay);
      process.stdout.write(
        `${store.root}: ${r.blobsRemoved} blobs removed (${formatBytes(r.bytesFreed)}), ${r.linksRemoved} repository links removed\n`,
      );
    }
  } finally {
    stores.close();
  }
  return 0;
}
