/**
 * The files a config names, checked the way `serve` will use them, so `verify` says now what
 * would otherwise fail (or quietly do less) at start. zot treats a sync credentials file and a
 * certificate directory as optional: their absence is a warning, everything else an error.
 */
import { accessSync, constants, statSync } from "node:fs";
import { loadNetworkFile, NetworkFileError } from "../redirect/networks.ts";
import type { ConfigProblem, KagamiConfig } from "./config.ts";

function unreadable(path: string, kind: "file" | "directory"): string | undefined {
  try {
    const st = statSync(path);
    if (kind === "file" && !st.isFile()) return `${path} is not a file`;
    if (kind === "directory" && !st.isDirectory()) return `${path} is not a directory`;
    accessSync(path, constants.R_OK | (kind === "directory" ? constants.X_OK : 0));
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return `${path} does not exist`;
    if (code === "EACCES") return `${path} is not readable by this user`;
    return `${path}: ${(err as Error).message}`;
  }
}

const exists = (path: string) => unreadable(path, "file") !== `${path} does not exist`;

export interface FileProblems {
  errors: ConfigProblem[];
  warnings: ConfigProblem[];
}

export function checkConfigFiles(config: KagamiConfig): FileProblems {
  const errors: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const need = (path: string, field: string) => {
    const why = unreadable(path, "file");
    if (why) errors.push({ path: field, message: why });
  };
  if (config.http.tls) {
    need(config.http.tls.cert, "http.tls.cert");
    need(config.http.tls.key, "http.tls.key");
  }
  if (config.http.auth) need(config.http.auth.htpasswdPath, "http.auth.htpasswd.path");
  const sync = config.sync;
  if (sync?.credentialsFile) {
    if (!exists(sync.credentialsFile)) {
      warnings.push({
        path: "extensions.sync.credentialsFile",
        message: `${sync.credentialsFile} does not exist; upstreams are accessed without credentials (as zot does)`,
      });
    } else need(sync.credentialsFile, "extensions.sync.credentialsFile");
  }
  for (const [i, r] of (sync?.registries ?? []).entries()) {
    if (!r.certDir) continue;
    const field = `extensions.sync.registries[${i}].certDir`;
    const why = unreadable(r.certDir, "directory");
    if (why === `${r.certDir} does not exist`) {
      warnings.push({ path: field, message: `${why}; only the system's CAs are trusted (as zot does)` });
    } else if (why) errors.push({ path: field, message: why });
  }
  for (const [i, r] of (config.redirect?.rules ?? []).entries()) {
    for (const [j, f] of r.networkFiles.entries()) {
      try {
        loadNetworkFile(f);
      } catch (err) {
        if (!(err instanceof NetworkFileError)) throw err;
        errors.push({ path: `extensions.redirect.rules[${i}].networkFiles[${j}]`, message: err.message });
      }
    }
  }
  return { errors, warnings };
}
