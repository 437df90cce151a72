/**
 * Shared plumbing for the real-client integration tests (skopeo, podman, buildah, docker):
 * which registry to run against, an isolated client environment (policy, auth file,
 * registries.conf, containers storage) per test file, a process runner that keeps the
 * full output for failure messages, and a few raw HTTP helpers for assertions.
 *
 * The registry under test is Kagami (the built server in dist/). Set
 * KAGAMI_CLIENTS_REGISTRY=distribution to run the same tests against CNCF distribution,
 * the reference the expectations were checked on. KAGAMI_CLIENTS_LOG_DIR=<dir> keeps Kagami's logs.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { type BuiltLayout, MEDIA_TYPES, readLayoutBlob, sha256 } from "../fixtures/images.ts";
import { startDistribution } from "../helpers/distribution.ts";
import { kagamiBin, startKagami } from "../helpers/kagami.ts";
import { hasTool } from "../helpers/tools.ts";

export type RegistryKind = "kagami" | "distribution";

export const registryKind: RegistryKind =
  process.env.KAGAMI_CLIENTS_REGISTRY === "distribution" ? "distribution" : "kagami";

export interface Registry {
  kind: RegistryKind;
  url: string;
  host: string;
  /** Server log so far (Kagami: JSON lines; distribution: stderr is not kept, empty). */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Whether the client tests can run: the tool is installed and the registry binary exists.
 * Like hasTool(): locally a missing piece skips, in CI (CI=true) it throws.
 */
export function canRun(tool: string): boolean {
  if (!hasTool(tool)) return false;
  if (registryKind === "distribution") return hasTool("docker-registry");
  if (existsSync(kagamiBin)) return true;
  if (process.env.CI === "true") throw new Error(`${kagamiBin} is missing: build before the client tests`);
  return false;
}

/**
 * Starts the registry under test. With KAGAMI_CLIENTS_LOG_DIR set, Kagami's log is written to
 * `<dir>/<name>.log` when it stops (handy with a client's --debug output to find the failing request).
 */
export async function startRegistry(name = "registry"): Promise<Registry> {
  if (registryKind === "distribution") {
    const d = await startDistribution({ deleteEnabled: true });
    return { kind: "distribution", url: d.url, host: d.host, output: () => "", stop: d.stop };
  }
  const k = await startKagami();
  const logDir = process.env.KAGAMI_CLIENTS_LOG_DIR;
  return {
    kind: "kagami",
    url: k.url,
    host: k.host,
    output: k.output,
    async stop() {
      if (logDir) {
        await mkdir(logDir, { recursive: true });
        await writeFile(join(logDir, `${name}.log`), k.output());
      }
      await k.destroy();
    },
  };
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    message: string,
    readonly stdout: string,
    readonly stderr: string,
    readonly code: number | string | null,
  ) {
    super(message);
  }
}

/** Runs a command; on a non-zero exit throws with the command line and everything it printed. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) {
          const code = (err as { code?: number | string }).code ?? null;
          reject(
            new CommandError(
              `${cmd} ${args.join(" ")} failed (${code}):\n--- stdout\n${stdout}\n--- stderr\n${stderr}`,
              stdout,
              stderr,
              code,
            ),
          );
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}

/** Runs a command that must fail; returns what it printed. */
export async function runFailing(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandError> {
  try {
    await run(cmd, args, opts);
  } catch (err) {
    if (err instanceof CommandError) return err;
    throw err;
  }
  throw new Error(`${cmd} ${args.join(" ")} unexpectedly succeeded`);
}

export interface ClientEnv {
  dir: string;
  policy: string;
  authFile: string;
  registriesConf: string;
  /** Containers storage for podman/buildah (vfs: works as root without overlay or fuse). */
  storageRoot: string;
  runRoot: string;
  env: NodeJS.ProcessEnv;
  /** Global flags that point podman/buildah at the isolated storage. */
  storageFlags: string[];
  cleanup(): Promise<void>;
}

/**
 * An isolated client environment: nothing read from or written to /etc/containers,
 * /var/lib/containers/storage, ~/.docker or the default auth file.
 * The registry host is listed insecure (plain HTTP) in registries.conf; the tests also pass
 * --tls-verify=false explicitly, as a user would.
 */
export async function makeClientEnv(registryHost: string): Promise<ClientEnv> {
  // lowercase: buildah/podman name an image pulled from oci:<dir> after the path, and references are lowercase
  const dir = join(tmpdir(), `kagami-client-${randomBytes(6).toString("hex")}`);
  await mkdir(dir, { recursive: true });
  const policy = join(dir, "policy.json");
  const authFile = join(dir, "auth.json");
  const registriesConf = join(dir, "registries.conf");
  const storageConf = join(dir, "storage.conf");
  const containersConf = join(dir, "containers.conf");
  const storageRoot = join(dir, "storage");
  const runRoot = join(dir, "run");
  const tmp = join(dir, "tmp");
  const dockerConfig = join(dir, "docker");
  await Promise.all([mkdir(tmp), mkdir(dockerConfig), mkdir(runRoot)]);
  await writeFile(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  // containers/image looks for $HOME/.config/containers/policy.json before /etc/containers/policy.json,
  // for root too: podman and buildah get the policy this way (their --signature-policy flags are hidden,
  // and /etc/containers/policy.json may be missing on a fresh machine)
  await mkdir(join(dir, ".config", "containers"), { recursive: true });
  await writeFile(
    join(dir, ".config", "containers", "policy.json"),
    JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }),
  );
  await writeFile(authFile, JSON.stringify({ auths: {} }));
  await writeFile(
    registriesConf,
    [
      "unqualified-search-registries = []",
      "",
      "[[registry]]",
      `location = "${registryHost}"`,
      "insecure = true",
      "",
    ].join("\n"),
  );
  await writeFile(
    storageConf,
    ["[storage]", 'driver = "vfs"', `graphroot = "${storageRoot}"`, `runroot = "${runRoot}"`, ""].join("\n"),
  );
  // No events journal, no systemd: podman in this sandbox has neither journald nor a systemd cgroup
  // manager. The network config dir moves out of /etc/containers/networks, which podman creates as root.
  await writeFile(
    containersConf,
    [
      "[engine]",
      'events_logger = "none"',
      'cgroup_manager = "cgroupfs"',
      "",
      "[network]",
      `network_config_dir = "${join(dir, "networks")}"`,
      "",
    ].join("\n"),
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    REGISTRY_AUTH_FILE: authFile,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    CONTAINERS_STORAGE_CONF: storageConf,
    CONTAINERS_CONF: containersConf,
    DOCKER_CONFIG: dockerConfig,
    TMPDIR: tmp,
  };
  return {
    dir,
    policy,
    authFile,
    registriesConf,
    storageRoot,
    runRoot,
    env,
    storageFlags: ["--root", storageRoot, "--runroot", runRoot, "--storage-driver", "vfs"],
    async cleanup() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifest,
  MEDIA_TYPES.dockerManifestList,
].join(", ");

export interface FetchedManifest {
  status: number;
  body: Buffer;
  digest: string | null;
  contentType: string | null;
  json<T = ManifestDoc>(): T;
}

export interface ManifestDoc {
  schemaVersion: number;
  mediaType?: string;
  config?: { mediaType: string; digest: string; size: number };
  layers?: { mediaType: string; digest: string; size: number }[];
  manifests?: { mediaType: string; digest: string; size: number; platform?: Record<string, string> }[];
  annotations?: Record<string, string>;
}

/** GET /v2/<repo>/manifests/<ref> accepting every manifest type. */
export async function getManifest(url: string, repo: string, ref: string): Promise<FetchedManifest> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${ref}`, { headers: { Accept: MANIFEST_ACCEPT } });
  const body = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    body,
    digest: res.headers.get("docker-content-digest"),
    contentType: res.headers.get("content-type"),
    json: <T>() => JSON.parse(body.toString()) as T,
  };
}

export async function getBlob(
  url: string,
  repo: string,
  digest: string,
): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(`${url}/v2/${repo}/blobs/${digest}`);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

export async function headBlob(
  url: string,
  repo: string,
  digest: string,
): Promise<{ status: number; size: number }> {
  const res = await fetch(`${url}/v2/${repo}/blobs/${digest}`, { method: "HEAD" });
  return { status: res.status, size: Number(res.headers.get("content-length") ?? -1) };
}

export async function getTags(url: string, repo: string): Promise<{ status: number; tags: string[] }> {
  const res = await fetch(`${url}/v2/${repo}/tags/list`);
  if (res.status !== 200) {
    await res.arrayBuffer();
    return { status: res.status, tags: [] };
  }
  const doc = (await res.json()) as { tags?: string[] | null };
  return { status: res.status, tags: [...(doc.tags ?? [])].sort() };
}

/** The diff_id of a gzip'd (or plain) layer blob fetched from the registry. */
export async function layerDiffId(url: string, repo: string, digest: string): Promise<string> {
  const blob = await getBlob(url, repo, digest);
  if (blob.status !== 200) throw new Error(`GET blob ${repo}@${digest}: ${blob.status}`);
  if (sha256(blob.body) !== digest) throw new Error(`blob ${digest} content hashes to ${sha256(blob.body)}`);
  const isGzip = blob.body[0] === 0x1f && blob.body[1] === 0x8b;
  return sha256(isGzip ? gunzipSync(blob.body) : blob.body);
}

async function pushBlob(url: string, repo: string, digest: string, data: Buffer): Promise<void> {
  const head = await fetch(`${url}/v2/${repo}/blobs/${digest}`, { method: "HEAD" });
  if (head.status === 200) return;
  const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  await start.arrayBuffer();
  const location = start.headers.get("location");
  if (start.status !== 202 || !location) throw new Error(`POST upload ${repo}: ${start.status}`);
  const put = new URL(location, url);
  put.searchParams.set("digest", digest);
  const res = await fetch(put, {
    method: "PUT",
    headers: { "Content-Type": "application/octet-stream" },
    body: data,
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`PUT blob ${repo}@${digest}: ${res.status}`);
}

async function pushManifest(url: string, repo: string, ref: string, mediaType: string, body: Buffer) {
  const res = await fetch(`${url}/v2/${repo}/manifests/${ref}`, {
    method: "PUT",
    headers: { "Content-Type": mediaType },
    body,
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`PUT manifest ${repo}:${ref}: ${res.status} ${text}`);
}

/**
 * Seeds a registry with a fixture image over plain HTTP (POST + monolithic PUT), without any
 * client tool, so a client's pull test does not depend on another client's push.
 */
export async function pushLayout(
  url: string,
  repo: string,
  layout: BuiltLayout,
  tag = layout.tag,
): Promise<void> {
  for (const img of layout.images) {
    for (const l of img.layers)
      await pushBlob(url, repo, l.digest, await readLayoutBlob(layout.dir, l.digest));
    await pushBlob(url, repo, img.configDigest, img.config);
    if (layout.index)
      await pushManifest(url, repo, img.manifestDigest, MEDIA_TYPES.ociManifest, img.manifest);
  }
  if (layout.index) await pushManifest(url, repo, tag, MEDIA_TYPES.ociIndex, layout.index);
  else await pushManifest(url, repo, tag, MEDIA_TYPES.ociManifest, layout.images[0]!.manifest);
}

/** Digest-level expectations every copy of a fixture image must meet in the registry. */
export async function expectImageInRegistry(
  url: string,
  repo: string,
  ref: string,
  layout: BuiltLayout,
): Promise<void> {
  const m = await getManifest(url, repo, ref);
  if (m.status !== 200) throw new Error(`GET manifest ${repo}:${ref}: ${m.status} ${m.body.toString()}`);
  const problems: string[] = [];
  if (sha256(m.body) !== layout.digest)
    problems.push(`manifest bytes hash to ${sha256(m.body)}, want ${layout.digest}`);
  if (m.digest !== layout.digest) problems.push(`Docker-Content-Digest ${m.digest}, want ${layout.digest}`);
  if (m.contentType !== layout.mediaType)
    problems.push(`Content-Type ${m.contentType}, want ${layout.mediaType}`);
  for (const img of layout.images) {
    for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
      const h = await headBlob(url, repo, d);
      if (h.status !== 200) problems.push(`HEAD blob ${repo}@${d}: ${h.status}`);
    }
    if (layout.index) {
      const child = await getManifest(url, repo, img.manifestDigest);
      if (child.status !== 200 || sha256(child.body) !== img.manifestDigest) {
        problems.push(`child manifest ${img.manifestDigest}: ${child.status}`);
      }
    }
  }
  if (problems.length) throw new Error(`${repo}:${ref}:\n  ${problems.join("\n  ")}`);
}

/**
 * Kagami's request log lines that show a server-side failure (5xx, or a log level of error and
 * above). A client may well retry past a 500 and succeed: this catches what the exit codes hide.
 */
export function serverFailures(reg: Registry): string[] {
  if (reg.kind !== "kagami") return [];
  return reg
    .output()
    .split("\n")
    .filter((line) => {
      if (!line.startsWith("{")) return line.trim() !== "";
      try {
        const r = JSON.parse(line) as { level?: string; status?: number };
        return r.level === "error" || r.level === "fatal" || (r.status ?? 0) >= 500;
      } catch {
        return true;
      }
    });
}
