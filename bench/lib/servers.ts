/**
 * The processes under test, each started fresh on a free loopback port with its own storage:
 * Kagami (the built dist/), CNCF distribution (Debian's docker-registry) plain or as a pull-through
 * cache, and nginx as a static file server (the machine's limit for blob GET).
 *
 * Both registries run with their packaged defaults where it matters for speed: log level info with an
 * access log line per request (written to a file), distribution with its in-memory blob descriptor
 * cache as Debian's /etc/docker/registry/config.yml has it.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, waitForHttp } from "../../test/helpers/net.ts";

const run = promisify(execFile);

export type TargetName = "kagami" | "distribution" | "nginx";

export interface Server {
  /** Which implementation this is. */
  target: TargetName;
  /** A label for logs: "kagami (pull)". */
  label: string;
  url: string;
  port: number;
  pid: number;
  /** Directory holding the config, log and data of this instance. */
  dir: string;
  /** Where the blobs live (Kagami: <data>/blobs/sha256/ab/abcd…). */
  dataDir: string;
  logFile: string;
  /** SIGTERM, wait, delete the instance's directory. */
  stop(): Promise<void>;
}

const live = new Set<{ proc: ChildProcess; dir: string }>();

/** Kills every process this harness started (by the pid it spawned) and removes their directories. */
export async function stopAll(): Promise<void> {
  for (const s of live) {
    if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill("SIGKILL");
    await rm(s.dir, { recursive: true, force: true }).catch(() => {});
  }
  live.clear();
}

function tail(file: string, n = 2000): string {
  try {
    const text = readFileSync(file, "utf8");
    return text.slice(-n);
  } catch {
    return "";
  }
}

async function launch(
  target: TargetName,
  label: string,
  dir: string,
  dataDir: string,
  cmd: string,
  args: string[],
  port: number,
  readyPath: string,
): Promise<Server> {
  const logFile = join(dir, "server.log");
  const fd = openSync(logFile, "a");
  const proc = spawn(cmd, args, { stdio: ["ignore", fd, fd], cwd: dir });
  closeSync(fd);
  const entry = { proc, dir };
  live.add(entry);
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await Promise.race([
      waitForHttp(`${url}${readyPath}`, 20_000),
      exited.then(() => {
        throw new Error(`exited with ${proc.exitCode ?? proc.signalCode}`);
      }),
    ]);
  } catch (err) {
    proc.kill("SIGKILL");
    live.delete(entry);
    const log = tail(logFile);
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    throw new Error(`${label} did not start: ${(err as Error).message}\n${log}`);
  }
  if (proc.pid === undefined) throw new Error(`${label}: no pid`);
  const pid = proc.pid;
  return {
    target,
    label,
    url,
    port,
    pid,
    dir,
    dataDir,
    logFile,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        let timer: NodeJS.Timeout | undefined;
        const done = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(false), 15_000);
          }),
        ]);
        clearTimeout(timer);
        if (!done) {
          proc.kill("SIGKILL");
          await exited;
        }
      }
      live.delete(entry);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface KagamiLaunch {
  /** The Kagami checkout whose dist/ is run. */
  root: string;
  workDir: string;
  label: string;
  /** Merged into the generated config (e.g. extensions.sync for a mirror). */
  extraConfig?: Record<string, unknown>;
  /** Write a V8 CPU profile (node --cpu-prof) into this directory when the server stops. */
  cpuProfDir?: string;
  /** More options for `node`, e.g. V8 flags to try. */
  nodeArgs?: string[];
}

export function kagamiConfig(dataDir: string, port: number, extra: Record<string, unknown> = {}) {
  return {
    distSpecVersion: "1.1.0",
    storage: { rootDirectory: dataDir },
    http: { address: "127.0.0.1", port: String(port) },
    log: { level: "info" },
    ...extra,
  };
}

export async function startKagami(opts: KagamiLaunch): Promise<Server> {
  const dir = await mkdtemp(join(opts.workDir, "kagami-"));
  const dataDir = join(dir, "data");
  const port = await freePort();
  const configPath = join(dir, "config.json");
  await writeFile(configPath, JSON.stringify(kagamiConfig(dataDir, port, opts.extraConfig), null, 2));
  const nodeArgs = [
    ...(opts.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", opts.cpuProfDir] : []),
    ...(opts.nodeArgs ?? []),
  ];
  const bin = join(opts.root, "dist/cli/main.js");
  return launch(
    "kagami",
    opts.label,
    dir,
    dataDir,
    process.execPath,
    [...nodeArgs, bin, "serve", "--config", configPath],
    port,
    "/v2/",
  );
}

export interface DistributionLaunch {
  workDir: string;
  label: string;
  /** Run as a pull-through cache of this registry URL. */
  proxyRemoteUrl?: string;
}

export async function startDistribution(opts: DistributionLaunch): Promise<Server> {
  const dir = await mkdtemp(join(opts.workDir, "distribution-"));
  const dataDir = join(dir, "data");
  const port = await freePort();
  const yaml = [
    "version: 0.1",
    "log:",
    "  level: info",
    "  fields:",
    "    service: registry",
    "storage:",
    "  cache:",
    "    blobdescriptor: inmemory",
    "  filesystem:",
    `    rootdirectory: ${dataDir}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "  headers:",
    "    X-Content-Type-Options: [nosniff]",
    ...(opts.proxyRemoteUrl ? ["proxy:", `  remoteurl: ${opts.proxyRemoteUrl}`] : []),
    "",
  ].join("\n");
  const configPath = join(dir, "config.yml");
  await writeFile(configPath, yaml);
  return launch(
    "distribution",
    opts.label,
    dir,
    dataDir,
    "docker-registry",
    ["serve", configPath],
    port,
    "/v2/",
  );
}

export interface NginxLaunch {
  workDir: string;
  /** Directory served at /. */
  root: string;
}

/** nginx with sendfile: the same files a registry serves, with no registry in the way. */
export async function startNginx(opts: NginxLaunch): Promise<Server> {
  const dir = await mkdtemp(join(opts.workDir, "nginx-"));
  await mkdir(join(dir, "temp"), { recursive: true });
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const conf = [
    // Workers must read the harness's private temp directories.
    asRoot ? "user root;" : "",
    "worker_processes auto;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "error.log")} warn;`,
    "events { worker_connections 1024; }",
    "http {",
    "  sendfile on;",
    "  tcp_nopush on;",
    "  access_log off;",
    "  default_type application/octet-stream;",
    `  client_body_temp_path ${join(dir, "temp")};`,
    `  proxy_temp_path ${join(dir, "temp")};`,
    `  fastcgi_temp_path ${join(dir, "temp")};`,
    `  uwsgi_temp_path ${join(dir, "temp")};`,
    `  scgi_temp_path ${join(dir, "temp")};`,
    "  server {",
    `    listen 127.0.0.1:${port};`,
    `    root ${opts.root};`,
    "    location / { }",
    "  }",
    "}",
    "",
  ].join("\n");
  const confPath = join(dir, "nginx.conf");
  await writeFile(confPath, conf);
  return launch(
    "nginx",
    "nginx (static)",
    dir,
    opts.root,
    "nginx",
    ["-p", dir, "-c", confPath, "-e", join(dir, "error.log"), "-g", "daemon off;"],
    port,
    "/",
  );
}

/** Whether a command exists on PATH. */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    await run("sh", ["-c", `command -v ${name}`]);
    return true;
  } catch {
    return false;
  }
}

/** First line a command prints for its version (stdout or stderr; some exit non-zero). */
export async function versionOf(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await run(cmd, args);
    return (stdout || stderr).split("\n")[0]?.trim();
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    const text = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim();
    return text ? text.split("\n")[0]?.trim() : undefined;
  }
}

/**
 * Whether this Kagami build has the on-demand mirror (zot's extensions.sync): `kagami verify` must
 * accept the config without a "not implemented" warning for it.
 */
export async function kagamiMirrorSupport(
  root: string,
  workDir: string,
): Promise<{ available: boolean; reason: string }> {
  const dir = await mkdtemp(join(workDir, "verify-"));
  const file = join(dir, "config.json");
  await writeFile(
    file,
    JSON.stringify(kagamiConfig(join(dir, "data"), 5000, mirrorExtension("http://127.0.0.1:5000"))),
  );
  try {
    const { stderr } = await run(process.execPath, [
      join(root, "dist/cli/main.js"),
      "verify",
      "--config",
      file,
    ]);
    const warning = stderr.split("\n").find((l) => /extensions/.test(l));
    if (warning) return { available: false, reason: `not yet available (kagami verify: ${warning.trim()})` };
    return { available: true, reason: "" };
  } catch (err) {
    const e = err as { stderr?: string };
    return {
      available: false,
      reason: `not yet available (kagami verify rejects extensions.sync: ${(e.stderr ?? "").trim().split("\n")[0]})`,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** zot's on-demand sync configuration: pull through from `upstream` for every repository. */
export function mirrorExtension(upstream: string): Record<string, unknown> {
  return {
    extensions: {
      sync: {
        enable: true,
        registries: [
          {
            urls: [upstream],
            onDemand: true,
            tlsVerify: false,
            content: [{ prefix: "**" }],
          },
        ],
      },
    },
  };
}
