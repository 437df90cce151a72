import { join } from "node:path";
import { defaults, loadConfigFile } from "../config/config.ts";
import { BackupInconsistentError, BackupTargetError, backupStore } from "../store/backup.ts";
import { parseFlags, UsageError } from "./args.ts";
import { formatBytes } from "./progress.ts";

export const backupUsage = `Usage: kagami backup [--config FILE] DIR

Backs up every store of the configuration into DIR, safely beside a running server: first a
consistent snapshot of the metadata database (SQLite online backup), then the blobs it references.
The root store goes to DIR/root, each storage.subPaths store to DIR/subpaths/<prefix> (no leading
slash, the others as +: /a/b goes to DIR/subpaths/a+b); each is laid out as a rootDirectory, so restoring is copying it back with the server stopped. Run it again into
the same DIR to copy only the blobs added since. See docs/operations.md.`;

export async function backupCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv, { config: { type: "string" }, help: { type: "boolean" } });
    if (!parsed.flags.help && parsed.positionals.length !== 1) throw new UsageError("one DIR is required");
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kagami backup: ${err.message}\n\n${backupUsage}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.flags.help) {
    process.stdout.write(`${backupUsage}\n`);
    return 0;
  }
  const { config } =
    typeof parsed.flags.config === "string" ? loadConfigFile(parsed.flags.config) : defaults();
  const dir = parsed.positionals[0]!;
  const stores = [
    { root: config.storage.rootDirectory, dest: join(dir, "root") },
    ...(config.storage.subPaths ?? []).map((sp) => ({
      root: sp.rootDirectory,
      // '+' is in no repository name, so nested "/a/b" and "/a_b" cannot land in one directory.
      dest: join(dir, "subpaths", sp.prefix.replace(/^\/+/, "").replaceAll("/", "+")),
    })),
  ];
  const dests = new Map<string, string>();
  for (const s of stores) {
    const other = dests.get(s.dest);
    if (other !== undefined && other !== s.root) {
      process.stderr.write(
        `kagami backup: the stores ${other} and ${s.root} would both be written to ${s.dest}; rename one sub-path prefix\n`,
      );
      return 1;
    }
    dests.set(s.dest, s.root);
  }
  for (const s of stores) {
    try {
      const r = await backupStore(s.root, s.dest);
      process.stdout.write(
        `${s.root} -> ${s.dest}: metadata snapshot, ${r.blobsCopied} blobs copied (${formatBytes(r.bytesCopied)}), ${r.blobsKept} already there\n`,
      );
    } catch (err) {
      if (!(err instanceof BackupTargetError || err instanceof BackupInconsistentError)) throw err;
      process.stderr.write(`kagami backup: ${err.message}\n`);
      return 1;
    }
  }
  return 0;
}
