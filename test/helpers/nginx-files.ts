import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForHttp } from "./net.ts";

export interface RunningFileHost {
  url: string;
  /** The directory nginx serves; write files here. */
  www: string;
  /** Requests nginx logged for `path` (exact request path, any method). */
  requests(path: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * nginx serving a directory on a free loopback port, one process, logging every request.
 * `locations` is added to its server block (a `location` sending clients elsewhere, say).
 */
export async function startFileHost(opts: { locations?: string } = {}): Promise<RunningFileHost> {
  const dir = await mkdtemp(join(tmpdir(), "kagami-nginx-"));
  const www = join(dir, "www");
  await mkdir(www);
  await mkdir(join(dir, "tmp"));
  const port = await freePort();
  const log = join(dir, "access.log");
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((k) => `${k}_temp_path ${join(dir, "tmp", k)};`)
    .join(" ");
  // master_process off: one process as the current user, so it reads files a test made private.
  const conf = `daemon off; master_process off; worker_processes 1;
pid ${join(dir, "nginx.pid")}; error_log ${join(dir, "error.log")} warn;
events { worker_connections 256; }
http {
  access_log ${log} combined; ${temp}
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${www}; location / { } ${opts.locations ?? ""} }
}
`;
  const confPath = join(dir, "nginx.conf");
  await writeFile(confPath, conf);
  const proc: ChildProcess = spawn("nginx", ["-p", dir, "-c", confPath], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/`);
  } catch (err) {
    proc.kill("SIGKILL");
    throw new Error(`nginx did not start: ${String(err)}\n${stderr}`);
  }
  return {
    url,
    www,
    async requests(path) {
      const text = await readFile(log, "utf8").catch(() => "");
      return text.split("\n").filter((l) => l.includes(` ${path} HTTP/`)).length;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
