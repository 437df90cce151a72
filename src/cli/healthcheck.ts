/**
 * The container HEALTHCHECK: asks the server's own /readyz on loopback and exits 0 when ready.
 * A separate entry point, not a `kagami` command, so that a probe costs one small module load.
 * The address comes from the config the server runs with, so a changed port or TLS keeps working.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { loadConfigFile } from "../config/config.ts";

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

const configPath = process.argv[2] ?? process.env.KAGAMI_CONFIG ?? "/etc/kagami/config.json";
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
