import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface RunningContainerd {
  socket: string;
  dir: string;
  /** Runs `ctr` against this daemon; resolves with stdout and stderr, rejects on a non-zero exit. */
  ctr(args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** Writes `<hostsDir>/<host>/hosts.toml` and returns the hosts directory. */
  hosts(host: string, toml: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts Debian's containerd as a private daemon (its own root, state and socket; the CRI plugin
 * off) for tests that need containerd's real resolver, mirror fallback included. Needs root.
 */
export async function startContainerd(): Promise<RunningContainerd> {
  const dir = await mkdtemp(join(tmpdir(), "kagami-containerd-"));
  const socket = join(dir, "containerd.sock");
  const config = join(dir, "config.toml");
  await writeFile(
    config,
    [
      "version = 2",
      `root = "${join(dir, "root")}"`,
      `state = "${join(dir, "state")}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${socket}"`,
      "",
    ].join("\n"),
  );
  const proc: ChildProcess = spawn("containerd", ["--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const ctr = (args: string[]) => run("ctr", ["--address", socket, ...args], { timeout: 60_000 });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`containerd exited: ${out.slice(-2000)}`);
    if (
      existsSync(socket) &&
      (await ctr(["version"]).then(
        () => true,
        () => false,
      ))
    )
      break;
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`containerd did not start: ${out.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const hostsDir = join(dir, "certs.d");
  return {
    socket,
    dir,
    ctr,
    async hosts(host, toml) {
      await mkdir(join(hostsDir, host), { recursive: true });
      await writeFile(join(hostsDir, host, "hosts.toml"), toml);
      return hostsDir;
    },
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
