/**
 * The Dockerfile, built and run for real without a public registry: buildah builds it (vfs storage
 * in a temp dir) from a Node.js base assembled out of this machine's node binary, taking the
 * application from the prebuilt/ context (APP_SOURCE=prebuilt) instead of npm; what users build
 * runs `npm ci` in the build stage instead, which needs the network. The image is then unpacked
 * with umoci and its entrypoint run in that root filesystem as the image's user, with its
 * environment and working directory: `podman run` cannot start a container in this sandbox (crun and
 * runc both fail to set RLIMIT_NOFILE/RLIMIT_NPROC, with --ulimit host, with the current limits
 * passed explicitly and with --cgroups=disabled). skopeo pushes and pulls through it, and Kagami
 * stores its own image.
 */
import type { ChildProcess } from "node:child_process";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClientEnv, canRun, getManifest, makeClientEnv, run } from "../clients/common.ts";
import { buildImageLayout } from "../fixtures/images.ts";
import { repoRoot } from "../helpers/kagami.ts";
import { freePort, waitForHttp } from "../helpers/net.ts";
import { hasTool } from "../helpers/tools.ts";
import {
  type BundleProcess,
  bundleProcess,
  nodeBaseContext,
  prebuiltContext,
  runInRootfs,
} from "./rootfs.ts";

interface ImageConfig {
  User: string;
  Env: string[];
  Entrypoint: string[];
  Cmd: string[];
  WorkingDir: string;
  Volumes: Record<string, object>;
  ExposedPorts: Record<string, object>;
  StopSignal: string;
  Healthcheck: { Test: string[] };
  Labels: Record<string, string>;
}

const tools = ["buildah", "skopeo", "umoci", "unshare", "ldd"];
const ready = canRun("buildah") && tools.every((t) => hasTool(t));

/** Waits for a process to exit; its exit code, or the signal's name. */
function exited(p: ChildProcess): Promise<number | string> {
  if (p.exitCode !== null) return Promise.resolve(p.exitCode);
  if (p.signalCode !== null) return Promise.resolve(p.signalCode);
  return new Promise((resolve) => p.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
}

describe.skipIf(!ready)("container image", () => {
  const image = "localhost/kagami:image-test";
  let ce: ClientEnv;
  let rootfs: string;
  let proc: BundleProcess;
  let server: ChildProcess | undefined;
  let log = "";
  let host: string;

  const buildah = (...args: string[]) =>
    run("buildah", [...ce.storageFlags, ...args], { env: ce.env, timeoutMs: 300_000 });
  const skopeo = (...args: string[]) =>
    run("skopeo", ["--policy", ce.policy, ...args], { env: ce.env, timeoutMs: 300_000 });
  const inImage = async (...args: string[]) => {
    const p = runInRootfs(rootfs, proc, args);
    let out = "";
    p.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr?.on("data", (d: Buffer) => (out += d.toString()));
    return { code: await exited(p), out };
  };

  beforeAll(async () => {
    ce = await makeClientEnv("127.0.0.1");
    const base = join(ce.dir, "base");
    const ctx = join(ce.dir, "context");
    await nodeBaseContext(base);
    await prebuiltContext(ctx);
    await buildah("build", "--isolation", "chroot", "-t", "localhost/kagami-test-node:1", base);
    await buildah(
      "build",
      "--isolation",
      "chroot",
      "--pull=never",
      // HEALTHCHECK and STOPSIGNAL live in the Docker config format; OCI has no field for a healthcheck.
      "--format",
      "docker",
      "--build-arg",
      "RUNTIME_IMAGE=localhost/kagami-test-node:1",
      "--build-arg",
      "APP_SOURCE=prebuilt",
      "--build-arg",
      "REVISION=image-test",
      "-t",
      image,
      ctx,
    );
    await skopeo("copy", `containers-storage:${image}`, `oci:${join(ce.dir, "oci")}:test`);
    const bundle = join(ce.dir, "bundle");
    await run("umoci", ["unpack", "--image", `${join(ce.dir, "oci")}:test`, bundle], { timeoutMs: 300_000 });
    rootfs = join(bundle, "rootfs");
    proc = await bundleProcess(bundle);
  }, 900_000);

  afterAll(async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill("SIGKILL");
      await exited(server);
    }
    await ce?.cleanup();
  });

  it("has the documented configuration: non-root, volume, port, healthcheck, stop signal, labels", async () => {
    const inspected = JSON.parse((await buildah("inspect", "--type", "image", image)).stdout) as {
      Docker: { config: ImageConfig };
    };
    const c = inspected.Docker.config;
    expect(c.User).toBe("1000:1000");
    expect(c.Entrypoint).toEqual(["node", "/app/dist/cli/main.js"]);
    expect(c.Cmd).toEqual(["serve", "--config", "/etc/kagami/config.json"]);
    expect(Object.keys(c.Volumes)).toEqual(["/var/lib/kagami"]);
    expect(Object.keys(c.ExposedPorts)).toEqual(["5000/tcp"]);
    expect(c.StopSignal).toBe("SIGTERM");
    expect(c.Healthcheck.Test).toEqual(["CMD", "node", "/app/dist/cli/healthcheck.js"]);
    expect(c.Labels["org.opencontainers.image.licenses"]).toBe("Apache-2.0");
    expect(c.Labels["org.opencontainers.image.revision"]).toBe("image-test");
    expect(c.Labels["org.opencontainers.image.title"]).toBe("kagami");
    // the Dockerfile's default VERSION must follow package.json
    const pkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as { version: string };
    expect(c.Labels["org.opencontainers.image.version"]).toBe(pkg.version);
    // what umoci made of it for a runtime
    expect(proc.user).toMatchObject({ uid: 1000, gid: 1000 });
    expect(proc.cwd).toBe("/var/lib/kagami");
    expect(proc.args).toEqual([...c.Entrypoint, ...c.Cmd]);
  });

  it("bakes in a default configuration that kagami verify accepts", async () => {
    const verified = await inImage(
      "node",
      "/app/dist/cli/main.js",
      "verify",
      "--config",
      "/etc/kagami/config.json",
    );
    expect(verified, verified.out).toMatchObject({ code: 0 });
    const config = JSON.parse(await readFile(join(rootfs, "etc/kagami/config.json"), "utf8"));
    expect(config.http).toMatchObject({ address: "0.0.0.0", port: "5000" });
    expect(config.storage.rootDirectory).toBe("/var/lib/kagami");
  });

  it("runs its entrypoint as the unprivileged user, storing in the volume", async () => {
    // As `-v config.json:/etc/kagami/config.json` would: the same config on a free port.
    const port = await freePort();
    const configPath = join(rootfs, "etc/kagami/config.json");
    const config = JSON.parse(await readFile(configPath, "utf8"));
    config.http.port = String(port);
    await writeFile(configPath, JSON.stringify(config));
    host = `127.0.0.1:${port}`;
    server = runInRootfs(rootfs, proc);
    server.stdout?.on("data", (d: Buffer) => (log += d.toString()));
    server.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    await waitForHttp(`http://${host}/v2/`).catch((err: unknown) => {
      throw new Error(`the image's server did not start: ${String(err)}\n${log}`);
    });
    const res = await fetch(`http://${host}/v2/`);
    expect(res.status).toBe(200);
    expect((await stat(join(rootfs, "var/lib/kagami/kagami.db"))).uid).toBe(1000);
  });

  it("takes a push and serves the pull back (skopeo)", async () => {
    const layout = await buildImageLayout(join(ce.dir, "layout"), { tag: "v1" });
    await skopeo("copy", "--dest-tls-verify=false", layout.ref, `docker://${host}/fixtures/app:v1`);
    const m = await getManifest(`http://${host}`, "fixtures/app", "v1");
    expect(m.status).toBe(200);
    expect(m.digest).toBe(layout.digest);
    const back = join(ce.dir, "pulled");
    await mkdir(back);
    await skopeo("copy", "--src-tls-verify=false", `docker://${host}/fixtures/app:v1`, `oci:${back}:v1`);
    const index = JSON.parse(await readFile(join(back, "index.json"), "utf8"));
    expect(index.manifests[0].digest).toBe(layout.digest);
  });

  it("stores its own image", async () => {
    await skopeo(
      "copy",
      "--dest-tls-verify=false",
      `containers-storage:${image}`,
      `docker://${host}/kagami:test`,
    );
    const id = (
      await buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", image)
    ).stdout.trim();
    const m = await getManifest(`http://${host}`, "kagami", "test");
    expect(m.status).toBe(200);
    expect(m.json().config?.digest).toBe(`sha256:${id}`);
    const back = join(ce.dir, "self");
    await skopeo("copy", "--src-tls-verify=false", `docker://${host}/kagami:test`, `dir:${back}`);
    const pulled = JSON.parse(await readFile(join(back, "manifest.json"), "utf8"));
    expect(pulled.config.digest).toBe(`sha256:${id}`);
  });

  it("answers its HEALTHCHECK command as /readyz does", async () => {
    const readyz = await fetch(`http://${host}/readyz`);
    expect(readyz.status, await readyz.text()).toBe(200);
    const check = await inImage("node", "/app/dist/cli/healthcheck.js");
    expect(check.code, check.out).toBe(0);
  });

  it("shuts down cleanly on its STOPSIGNAL, and serves the volume's content after a restart", async () => {
    server!.kill("SIGTERM");
    expect(await exited(server!)).toBe(0);
    expect(log).toContain('"msg":"kagami stopped"');

    log = "";
    server = runInRootfs(rootfs, proc);
    server.stdout?.on("data", (d: Buffer) => (log += d.toString()));
    server.stderr?.on("data", (d: Buffer) => (log += d.toString()));
    await waitForHttp(`http://${host}/v2/`);
    expect((await getManifest(`http://${host}`, "kagami", "test")).status).toBe(200);
    server.kill("SIGTERM");
    expect(await exited(server)).toBe(0);
  });
});
