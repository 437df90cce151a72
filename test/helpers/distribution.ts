import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForHttp } from "./net.ts";

export interface RunningDistribution {
  url: string;
  host: string;
  port: number;
  rootDir: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export interface DistributionOptions {
  /** Extra YAML appended to the generated config (auth, proxy, ...). */
  extraYaml?: string;
  /** Allow DELETE (distribution disables it by default). */
  deleteEnabled?: boolean;
}

/** Starts CNCF distribution (Debian's docker-registry) on a free loopback port with fresh storage. */
export async function startDistribution(opts: DistributionOptions = {}): Promise<RunningDistribution> {
  const rootDir = await mkdtemp(join(tmpdir(), "kagami-dist-"));
  const port = await freePort();
  const config = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${join(rootDir, "data")}`,
    "  delete:",
    `    enabled: ${opts.deleteEnabled ?? true}`,
    "http:",
    `  addr: 127.0.0.1:${port}`,
    opts.extraYaml ?? "",
  ].join("\n");
  const configPath = join(rootDir, "config.yml");
  await writeFile(configPath, config);
  const proc = spawn("docker-registry", ["serve", configPath], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/v2/`);
  } catch (err) {
    proc.kill("SIGKILL");
    throw new Error(`distribution did not start: ${String(err)}\n${stderr}`);
  }
  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    rootDir,
    proc,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      await rm(rootDir, { recursive: true, force: true });
    },
  };
}
