#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError, defaults, type LoadedConfig, loadConfigFile } from "../config/config.ts";
import { checkConfigFiles } from "../config/files.ts";
import { CredentialsError, loadZotCredentials } from "../remote/credentials.ts";
import { createLogger } from "../server/logger.ts";
import { startServer } from "../server/serve.ts";
import { backupCommand } from "./backup.ts";
import { copyCommand } from "./copy.ts";
import { gcCommand } from "./gc.ts";
import { exportCommand, importCommand } from "./import-export.ts";
import { mirrorCommand } from "./mirror.ts";
import { promoteCommand } from "./promote.ts";
import { syncCommand } from "./sync.ts";
import { validateCommand } from "./validate.ts";

const usage = `kagami — an OCI registry and pull-through mirror

Usage:
  kagami serve [--config FILE]    serve the registry (default: http://127.0.0.1:5000, data in ./storage)
  kagami verify --config FILE     check a configuration file and print every problem
  kagami sync [--config FILE]     run one periodic sync pass of extensions.sync now
  kagami gc [--config FILE]       apply retention and the cache quota, remove unreferenced blobs
  kagami copy SRC DST             copy an image between registries, layouts and archives
  kagami mirror SRC DST | -f FILE mirror images as oc image mirror does, from arguments or mapping files
  kagami import FILE|DIR          load an oci-archive, OCI layout or docker save tar into the local store
  kagami export REF FILE          write images of the local store to an oci-archive
  kagami promote --manifest FILE  promote images by digest as an image promoter manifest lists them (dry run unless --confirm)
  kagami validate --registry URL  pull, download and check access as registry.k8s.io's mirror validation does
  kagami backup [--config FILE] DIR  back up metadata and blobs, beside a running server
  kagami --version

The configuration uses zot's JSON format; see docs/configuration.md.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

function load(configPath: string | undefined): LoadedConfig {
  return configPath ? loadConfigFile(configPath) : defaults();
}

async function serve(configPath: string | undefined): Promise<void> {
  const { config, warnings } = load(configPath);
  const logger = createLogger(config.log);
  for (const w of warnings) logger.warn({ field: w.path }, `config: ${w.path}: ${w.message}`);
  let running: Awaited<ReturnType<typeof startServer>>;
  try {
    running = await startServer(config, logger);
  } catch (err) {
    // Exit now rather than wait for the event loop to empty: whatever start-up left open (a pino
    // destination, a library's handle) must not leave a process that a service manager takes for a
    // running server while nothing listens.
    process.stderr.write(`kagami: ${(err as Error).message ?? String(err)}\n`);
    logger.error({ err }, "start-up failed");
    process.exitCode = 1;
    logger.flush(() => process.exit(1));
    setTimeout(() => process.exit(1), 1000);
    return;
  }
  let signalled = false;
  const stop = (signal: string) => {
    if (signalled) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, "shutting down");
    running.close().then(
      () => {
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

function verify(configPath: string | undefined): number {
  if (!configPath) {
    process.stderr.write("kagami verify: --config FILE is required\n");
    return 2;
  }
  const { config, warnings: fieldWarnings } = loadConfigFile(configPath);
  // What serve will open: a config that names a missing TLS key is not valid, however well formed.
  const files = checkConfigFiles(config);
  const credentials = config.sync?.credentialsFile;
  const credentialsReported = [...files.errors, ...files.warnings].some(
    (p) => p.path === "extensions.sync.credentialsFile",
  );
  if (credentials && !credentialsReported) {
    try {
      loadZotCredentials(credentials);
    } catch (err) {
      if (!(err instanceof CredentialsError)) throw err;
      files.errors.push({ path: "extensions.sync.credentialsFile", message: err.message });
    }
  }
  if (files.errors.length > 0) throw new ConfigError(files.errors, configPath);
  const warnings = [...fieldWarnings, ...files.warnings];
  for (const w of warnings) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
  process.stdout.write(
    `${configPath}: configuration is valid${warnings.length ? ` (${warnings.length} warnings)` : ""}\n`,
  );
  return 0;
}

/** Commands with flags of their own parse their arguments themselves. */
const ownFlags: Record<string, (args: string[]) => Promise<number>> = {
  sync: syncCommand,
  gc: gcCommand,
  copy: copyCommand,
  mirror: mirrorCommand,
  import: importCommand,
  export: exportCommand,
  promote: promoteCommand,
  validate: validateCommand,
  backup: backupCommand,
};

async function main(argv: string[]): Promise<number> {
  const own = argv[0] !== undefined ? ownFlags[argv[0]] : undefined;
  if (own) return own(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
  });
  if (values.version) {
    process.stdout.write(`kagami ${version()}\n`);
    return 0;
  }
  const [command, ...rest] = positionals;
  // zot's form `serve FILE` is accepted as well as `serve --config FILE`.
  const configPath = values.config ?? rest[0];
  if (values.help || !command) {
    process.stdout.write(`${usage}\n`);
    return values.help ? 0 : 2;
  }
  switch (command) {
    case "serve":
      await serve(configPath);
      return -1;
    case "verify":
      return verify(configPath);
    default:
      process.stderr.write(`kagami: unknown command '${command}'\n\n${usage}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`kagami: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(`kagami: ${(err as Error).message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
