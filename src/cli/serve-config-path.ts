/**
 * The `--config` file a `serve` command line names (argv split at NUL, as /proc/<pid>/cmdline has
 * it); undefined when the command is not `serve` or names none. The container HEALTHCHECK reads
 * PID 1's, so that `docker run kagami serve --config /elsewhere.json` is probed on the port that
 * file sets without the check being told twice.
 */
export function serveConfigPath(argv: string[]): string | undefined {
  if (!argv.includes("serve")) return undefined;
  for (const [i, a] of argv.entries()) {
    if (a === "--config" && argv[i + 1]) return argv[i + 1];
    if (a.startsWith("--config=")) return a.slice("--config=".length) || undefined;
  }
  return undefined;
}
