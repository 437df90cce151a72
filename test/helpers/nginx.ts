import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForHttp } from "./net.ts";

export interface NginxOptions {
  /** The directory served at `/`; default: a fresh one (see `root`). */
  root?: string;
  /** More `location` blocks (proxying, redirects, exact-path overrides), placed before `location /`. */
  locations?: string;
  /** Proxy everything else to this URL instead of serving `root` (the Host header is passed on). */
  proxyTo?: string;
}

export interface RunningNginx {
  url: string;
  host: string;
  port: number;
  /** The directory served at `/`. */
  root: string;
  proc: ChildProcess;
  /** Request lines served so far ("GET /path 200"), from nginx's access log. */
  requests(): Promise<string[]>;
  /** How many requests (any method) asked for exactly `path`. */
  count(path: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * nginx on a free loopback port, in the foreground, logging every request: a static file host (a
 * bucket, a CDN, dl.k8s.io), or a small front that proxies to a registry with a few paths changed.
 */
export async function startNginx(opts: NginxOptions = {}): Promise<RunningNginx> {
  const dir = await mkdtemp(join(tmpdir(), "kagami-nginx-"));
  const root = opts.root ?? join(dir, "root");
  const temp = join(dir, "temp");
  await Promise.all([opts.root ? undefined : mkdir(root), mkdir(temp)]);
  const port = await freePort();
  const log = join(dir, "access.log");
  const conf = [
    // Workers must read the test's private temp directories and files.
    process.getuid?.() === 0 ? "user root;" : "",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "error.log")} warn;`,
    "events { worker_connections 256; }",
    "http {",
    "  log_format plain '$request_method $uri $status';",
    `  access_log ${log} plain;`,
    "  default_type application/octet-stream;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${temp};`),
    "  server {",
    `    listen 127.0.0.1:${port};`,
    `    root ${root};`,
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
  const requests = async () => {
    const text = await readFile(log, "utf8").catch(() => "");
    return text.split("\n").filter((l) => l !== "");
  };
  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    root,
    proc,
    requests,
    async count(path) {
      return (await requests()).filter((l) => l.split(" ")[1] === path).length;
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
