import { readFileSync, unwatchFile, watchFile } from "node:fs";
import type { Server } from "node:https";
import { createSecureContext } from "node:tls";
import type { Logger } from "pino";

export interface TlsFiles {
  cert: string;
  key: string;
}

/** A certificate and key as read from their files. */
export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

export function readTlsPair(files: TlsFiles): TlsPair {
  return { cert: readFileSync(files.cert), key: readFileSync(files.key) };
}

/**
 * Puts a rotated certificate into service without a restart: new connections get the files' current
 * pair, open ones keep theirs. A rotation writes two files, so a half-done one (a new certificate
 * with the old key) does not match and is skipped with a warning, keeping the pair that works; the
 * write of the second file completes it. Polling, like the config and htpasswd watchers, also sees
 * the symlink swaps of a Kubernetes Secret volume and editors that replace the file.
 */
export function watchTlsFiles(
  server: Server,
  files: TlsFiles,
  inUse: TlsPair,
  logger: Logger,
  intervalMs = 1000,
): () => void {
  let current = inUse;
  const reload = () => {
    let next: TlsPair;
    try {
      next = readTlsPair(files);
      if (next.cert.equals(current.cert) && next.key.equals(current.key)) return;
      // Throws on a key that does not belong to the certificate, or on unparseable PEM.
      createSecureContext(next);
    } catch (err) {
      logger.warn(
        { cert: files.cert, key: files.key },
        `TLS certificate not reloaded, keeping the one in use: ${(err as Error).message}`,
      );
      return;
    }
    server.setSecureContext(next);
    current = next;
    logger.info({ cert: files.cert }, "TLS certificate reloaded");
  };
  for (const f of [files.cert, files.key]) watchFile(f, { interval: intervalMs }, reload);
  return () => {
    for (const f of [files.cert, files.key]) unwatchFile(f, reload);
  };
}
