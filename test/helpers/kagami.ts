import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, waitForHttp } from "./net.ts";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const kagamiBin = join(repoRoot, "dist/cli/main.js");

export interface RunningKagami {
  url: string;
  host: string;
  port: number;
  rootDir: string;
  configPath: string;
  proc: ChildProcess;
  /** Everything the server wrote to stdout/stderr so far (JSON log lines). */
  output(): string;
  /** SIGTERM and wait; keeps the storage so a restart can reuse it. */
  stop(): Promise<void>;
  /** SIGKILL, like a crash. */
  kill(): Promise<void>;
  /** Stops and deletes the storage. */
  destroy(): Promise<void>;
}

export interface KagamiOptions {
  /** Merged over the generated config: storage.rootDirectory and http.address/port are filled in. */
  config?: Record<string, unknown>;
  /** Reuse this storage directory (for restart tests). */
  rootDir?: string;
  port?: number;
  /** Serve HTTPS with this certificate and key (PEM files). */
  tls?: { cert: string; key: string };
  /** A command line the server runs under (unshare, mount, ...); it must end by exec'ing its arguments. */
  launcher?: string[];
}

/** Starts the built server (dist/) as a real process on a free loopback port. `npm test` builds first. */
export async function startKagami(opts: KagamiOptions = {}): Promise<RunningKagami> {
  const rootDir = opts.rootDir ?? (await mkdtemp(join(tmpdir(), "kagami-test-")));
  const port = opts.port ?? (await freePort());
  const base = opts.config ?? {};
  const config = {
    distSpecVersion: "1.1.0",
    ...base,
    storage: { ...((base.storage as object) ?? {}), rootDirectory: join(rootDir, "data") },
    http: {
      ...((base.http as object) ?? {}),
      address: "127.0.0.1",
      port: String(port),
      ...(opts.tls ? { tls: opts.tls } : {}),
    },
    log: { level: "info", ...((base.log as object) ?? {}) },
  };
  const configPath = join(rootDir, "config.json");
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const argv = [...(opts.launcher ?? []), process.execPath, kagamiBin, "serve", "--config", configPath];
  const proc = spawn(argv[0]!, argv.slice(1), {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const url = `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/v2/`);
  } catch (err) {
    proc.kill("SIGKILL");
    throw new Error(`kagami did not start: ${String(err)}\n${out}`);
  }
  const waitExit = async (signal: NodeJS.Signals) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill(signal);
    await exited;
  };
  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    rootDir,
    configPath,
    proc,
    output: () => out,
    stop: () => waitExit("SIGTERM"),
    kill: () => waitExit("SIGKILL"),
    async destroy() {
      await waitExit("SIGTERM");
      if (!opts.rootDir) await rm(rootDir, { recursive: true, force: true });
    },
  };
}
