/**
 * What the image test needs to build and run the Dockerfile without a public registry or a
 * container runtime: a Node.js base image assembled from this machine's own node binary, a
 * "prebuilt" build context holding dist/ and the production node_modules, and a runner that
 * executes an unpacked image the way a runtime would (its user, environment, working directory
 * and command), with the host's network.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { repoRoot } from "../helpers/kagami.ts";

/** The shared libraries a binary loads, as absolute paths (ldd's view, the loader included). */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  return [...out.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
}

/**
 * A Containerfile context for a `FROM scratch` image holding the running node binary at
 * /usr/local/bin/node (where the official images have it), its libraries, a passwd/group with
 * root and node (uid 1000, as in the official images) and a sticky /tmp.
 */
export async function nodeBaseContext(dir: string): Promise<void> {
  const rootfs = join(dir, "rootfs");
  await mkdir(join(rootfs, "usr/local/bin"), { recursive: true });
  await mkdir(join(rootfs, "etc"));
  await mkdir(join(rootfs, "tmp"));
  await chmod(join(rootfs, "tmp"), 0o1777);
  await copyFile(process.execPath, join(rootfs, "usr/local/bin/node"));
  await chmod(join(rootfs, "usr/local/bin/node"), 0o755);
  for (const lib of sharedLibraries(process.execPath)) {
    await mkdir(join(rootfs, dirname(lib)), { recursive: true });
    await copyFile(lib, join(rootfs, lib));
  }
  await writeFile(
    join(rootfs, "etc/passwd"),
    "root:x:0:0:root:/root:/sbin/nologin\nnode:x:1000:1000::/home/node:/sbin/nologin\n",
  );
  await writeFile(join(rootfs, "etc/group"), "root:x:0:\nnode:x:1000:\n");
  await writeFile(
    join(dir, "Containerfile"),
    "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin\n",
  );
}

/**
 * The repository's Dockerfile, .dockerignore and default container config, plus prebuilt/ with the
 * built dist/ and only the production dependencies (npm's own list of them), as APP_SOURCE=prebuilt
 * expects: the image then builds without npm, network or a compiler.
 */
export async function prebuiltContext(dir: string): Promise<void> {
  for (const f of ["Dockerfile", ".dockerignore", "examples/container/config.json"]) {
    await mkdir(dirname(join(dir, f)), { recursive: true });
    await copyFile(join(repoRoot, f), join(dir, f));
  }
  const app = join(dir, "prebuilt");
  await cp(join(repoRoot, "dist"), join(app, "dist"), { recursive: true });
  await copyFile(join(repoRoot, "package.json"), join(app, "package.json"));
  const listed = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  // node_modules is a symlink in worktrees: npm prints real paths, so cut at the last node_modules/.
  for (const path of listed.split("\n").filter((p) => p.includes("/node_modules/"))) {
    const rel = path.slice(path.indexOf("/node_modules/") + 1);
    if (!existsSync(join(app, rel))) await cp(path, join(app, rel), { recursive: true, dereference: true });
  }
  if (!existsSync(join(app, "node_modules/better-sqlite3/build/Release/better_sqlite3.node")))
    throw new Error(`the production dependency list missed better-sqlite3's native module:\n${listed}`);
}

/** The process of an OCI runtime bundle's config.json (umoci unpack writes one from the image config). */
export interface BundleProcess {
  args: string[];
  env: string[];
  cwd: string;
  user: { uid: number; gid: number };
}

export async function bundleProcess(bundle: string): Promise<BundleProcess> {
  const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8")) as { process: BundleProcess };
  return spec.process;
}

/**
 * Starts `args` (the image's entrypoint and command, or another command) inside the unpacked root
 * filesystem as the image's user, in its working directory, with exactly its environment: what a
 * runtime does, minus namespaces other than the root (the network is the host's, so a test reaches
 * the server on loopback). unshare execs the command: the returned process is the server itself,
 * and signals reach it as a runtime's stop would.
 */
export function runInRootfs(rootfs: string, proc: BundleProcess, args = proc.args): ChildProcess {
  const env = Object.fromEntries(
    proc.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
  const [cmd, ...rest] = args;
  const path = (env.PATH ?? "/usr/bin:/bin").split(":");
  const resolved = cmd!.startsWith("/")
    ? cmd!
    : path.map((p) => join(p, cmd!)).find((p) => existsSync(join(rootfs, p)));
  if (!resolved) throw new Error(`${cmd} is not on the image's PATH ${env.PATH}`);
  return spawn(
    "unshare",
    [
      `--root=${rootfs}`,
      `--wd=${proc.cwd}`,
      `--setgid=${proc.user.gid}`,
      `--setuid=${proc.user.uid}`,
      "--",
      resolved,
      ...rest,
    ],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
}
