/**
 * The container HEALTHCHECK: asks the server's own /readyz on loopback and exits 0 when ready.
 * A separate entry point, not a `kagami` command, so that a probe costs one small module load.
 * The address comes from the config the server runs with (PID 1's --config, unless one is given),
 * so a changed port, TLS or another config file keeps working.
 */
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { resolve } from "node:path";
import { loadConfigFile } from "../config/config.ts";
import { serveConfigPath } from "./serve-config-path.ts";

const loopback: Record<string, string> = { "0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1" };

function probe(configPath: string): Promise<number> {
  const { config } = loadConfigFile(configPath);
  const host = loopback[config.http.address] ?? config.http.address;
  const request = config.http.tls ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: config.http.port,
        path: "/readyz",
        timeout: 4000,
        // Our own server on loopback: its certificate names the public host, not 127.0.0.1.
        rejectUnauthorized: false,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 4s")));
    req.on("error", reject);
    req.end();
  });
}

/** The config the container's server (PID 1) was started with, if it is `kagami serve`. */
function pid1ConfigPath(): string | undefined {
  try {
    const path = serveConfigPath(readFileSync("/proc/1/cmdline", "utf8").split("\0"));
    // A relative path is the server's, from its working directory.
    return path === undefined ? undefined : resolve("/proc/1/cwd", path);
  } catch {
    return undefined;
  }
}

const configPath =
  process.argv[2] ?? process.env.KAGAMI_CONFIG ?? pid1ConfigPath() ?? "/etc/kagami/config.json";
probe(configPath).then(
  (status) => {
    if (status !== 200) process.stderr.write(`kagami healthcheck: /readyz answered ${status}\n`);
    process.exit(status === 200 ? 0 : 1);
  },
  (err: unknown) => {
    process.stderr.write(`kagami healthcheck: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
