import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForHttp } from "./net.ts";

export interface RunningNginx {
  url: string;
  /** The directory served at `/`. */
  root: string;
  proc: ChildProcess;
  /** Request lines served so far ("GET /path 200"), from nginx's access log. */
  requests(): Promise<string[]>;
  stop(): Promise<void>;
}

/** nginx serving a fresh directory as static files on a free loopback port (a bucket or CDN stand-in). */
export async function startNginx(): Promise<RunningNginx> {
  const dir = await mkdtemp(join(tmpdir(), "kagami-nginx-"));
  const root = join(dir, "root");
  await Promise.all([mkdir(root), mkdir(join(dir, "temp"))]);
  const port = await freePort();
  const log = join(dir, "access.log");
  const conf = [
    // Workers must read the test's private temp directories.
    process.getuid?.() === 0 ? "user root;" : "",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "error.log")} warn;`,
    "events { worker_connections 64; }",
    "http {",
    "  log_format plain '$request_method $uri $status';",
    `  access_log ${log} plain;`,
    "  default_type application/octet-stream;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map(
      (t) => `  ${t}_temp_path ${join(dir, "temp")};`,
    ),
    "  server {",
    `    listen 127.0.0.1:${port};`,
    `    root ${root};`,
    "    location / { }",
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
    root,
    proc,
    async requests() {
      const text = await readFile(log, "utf8").catch(() => "");
      return text.split("\n").filter((l) => l !== "");
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
