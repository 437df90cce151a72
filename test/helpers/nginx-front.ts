import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForHttp } from "./net.ts";

export interface RunningNginx {
  url: string;
  host: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** The directory served at `/`. */
  root: string;
  /** More `location` blocks (proxying, redirects, exact-path overrides), placed before `location /`. */
  locations?: string;
  /** Proxy everything else to this URL instead of serving `root` (the Host header is passed on). */
  proxyTo?: string;
}

/** Starts nginx as a static file server (or a small proxy) on a free loopback port, in the foreground. */
export async function startNginx(opts: NginxOptions): Promise<RunningNginx> {
  const dir = await mkdtemp(join(tmpdir(), "kagami-nginx-"));
  await mkdir(join(dir, "temp"));
  const port = await freePort();
  const temp = join(dir, "temp");
  const conf = [
    // Workers must read the test's private temp directories.
    process.getuid?.() === 0 ? "user root;" : "",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "error.log")} warn;`,
    "events { worker_connections 256; }",
    "http {",
    "  access_log off;",
    "  default_type application/octet-stream;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${temp};`),
    "  server {",
    `    listen 127.0.0.1:${port};`,
    `    root ${opts.root};`,
    opts.locations ?? "",
    opts.proxyTo
      ? `    location / { proxy_pass ${opts.proxyTo}; proxy_set_header Host $http_host; proxy_set_header X-Forwarded-Proto http; proxy_buffering off; client_max_body_size 0; }`
      : "    location / { }",
    "  }",
    "}",
    "",
  ].join("\n");
  const confPath = join(dir, "nginx.conf");
  await writeFile(confPath, conf);
  const proc = spawn(
    "nginx",
    ["-p", dir, "-c", confPath, "-e", join(dir, "error.log"), "-g", "daemon off;"],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
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
    host: `127.0.0.1:${port}`,
    port,
    proc,
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
