/**
 * Registry operations as zot's `zb` performs them, so the numbers compare with what that community
 * reports: a push is POST + PUT of the layer (or PATCH chunks + PUT), the config the same way, then
 * the manifest; a pull is HEAD + GET of the manifest, the config and each layer.
 */
import { type Blob, configBlob, imageManifest, ociManifestType, sha256 } from "./blobs.ts";
import type { Client, Response } from "./http.ts";

export const manifestAccept = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

export interface OpResult {
  /** Blob bytes moved (layer bytes; manifests and configs are not counted). */
  bytes: number;
  requests: number;
  ms: number;
  /** Pulls: milliseconds from the layer GET to its first body byte. */
  layerFirstByteMs?: number;
  /** Pushes: the digest of the manifest pushed. */
  manifestDigest?: string;
}

function location(client: Client, res: Response): URL {
  const loc = res.headers.location;
  if (!loc) throw new Error(`no Location in the ${res.status} answer`);
  return client.url(loc);
}

function withDigest(url: URL, digest: string): URL {
  const u = new URL(url);
  u.searchParams.set("digest", digest);
  return u;
}

const octet = "application/octet-stream";

async function startUpload(client: Client, repo: string): Promise<URL> {
  const res = await client.expect(202, `/v2/${repo}/blobs/uploads/`, { method: "POST" });
  return location(client, res);
}

/** POST, then PUT ?digest= with the whole blob. Two requests. */
export async function pushBlobMonolithic(
  client: Client,
  repo: string,
  blob: Blob | { bytes: Buffer; digest: string },
): Promise<number> {
  const loc = await startUpload(client, repo);
  if ("bytes" in blob) {
    await client.expect(201, withDigest(loc, blob.digest), {
      method: "PUT",
      body: blob.bytes,
      headers: { "Content-Type": octet },
    });
  } else {
    await client.expect(201, withDigest(loc, blob.digest), {
      method: "PUT",
      body: blob.stream(),
      headers: { "Content-Type": octet, "Content-Length": blob.size },
    });
  }
  return 2;
}

/** POST, PATCH chunks of `chunkSize` with Content-Range, then PUT ?digest= without a body. */
export async function pushBlobChunked(
  client: Client,
  repo: string,
  blob: Blob | { bytes: Buffer; digest: string },
  chunkSize: number,
): Promise<number> {
  let loc = await startUpload(client, repo);
  let requests = 1;
  const size = "bytes" in blob ? blob.bytes.length : blob.size;
  for (let start = 0; start < size; start += chunkSize) {
    const end = Math.min(size, start + chunkSize);
    const body = "bytes" in blob ? blob.bytes.subarray(start, end) : blob.stream(start, end);
    const res = await client.expect(202, loc, {
      method: "PATCH",
      body,
      headers: {
        "Content-Type": octet,
        "Content-Length": end - start,
        "Content-Range": `${start}-${end - 1}`,
      },
    });
    loc = location(client, res);
    requests++;
  }
  await client.expect(201, withDigest(loc, blob.digest), { method: "PUT" });
  return requests + 1;
}

export type PushMode = "monolithic" | "chunked";

/** Pushes a one-layer image: layer, config, manifest under `tag`. Returns zb's view of the work. */
export async function pushImage(
  client: Client,
  repo: string,
  tag: string,
  layer: Blob,
  mode: PushMode,
  chunkSize: number,
): Promise<OpResult> {
  const started = performance.now();
  const config = configBlob(`${repo}:${tag}`);
  let requests = 0;
  if (mode === "monolithic") {
    requests += await pushBlobMonolithic(client, repo, layer);
    requests += await pushBlobMonolithic(client, repo, config);
  } else {
    requests += await pushBlobChunked(client, repo, layer, chunkSize);
    requests += await pushBlobChunked(client, repo, config, chunkSize);
  }
  const manifest = imageManifest(config, [layer]);
  await client.expect(201, `/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    body: manifest,
    headers: { "Content-Type": ociManifestType },
  });
  requests++;
  return { bytes: layer.size, requests, ms: performance.now() - started, manifestDigest: sha256(manifest) };
}

interface PulledManifest {
  config: { digest: string; size: number };
  layers: { digest: string; size: number }[];
}

/** HEAD + GET of the manifest, the config and every layer, as zb's pull does. */
export async function pullImage(client: Client, repo: string, reference: string): Promise<OpResult> {
  const started = performance.now();
  const manifestPath = `/v2/${repo}/manifests/${reference}`;
  await client.expect(200, manifestPath, { method: "HEAD", headers: { Accept: manifestAccept } });
  const m = await client.expect(200, manifestPath, { headers: { Accept: manifestAccept } });
  const manifest = JSON.parse(m.body!.toString("utf8")) as PulledManifest;
  let requests = 2;
  const configPath = `/v2/${repo}/blobs/${manifest.config.digest}`;
  await client.expect(200, configPath, { method: "HEAD" });
  await client.expect(200, configPath);
  requests += 2;
  let bytes = 0;
  let layerFirstByteMs: number | undefined;
  for (const layer of manifest.layers) {
    const path = `/v2/${repo}/blobs/${layer.digest}`;
    await client.expect(200, path, { method: "HEAD" });
    const res = await client.expect(200, path, { keepBody: false });
    if (res.bytes !== layer.size) {
      throw new Error(`GET ${path}: ${res.bytes} bytes, the manifest says ${layer.size}`);
    }
    layerFirstByteMs ??= res.firstByteMs;
    bytes += res.bytes;
    requests += 2;
  }
  const result: OpResult = { bytes, requests, ms: performance.now() - started };
  if (layerFirstByteMs !== undefined) result.layerFirstByteMs = layerFirstByteMs;
  return result;
}

export interface ClientsRun {
  elapsedMs: number;
  ops: OpResult[];
  errors: string[];
}

/**
 * Runs `clients` loops of `op` until `durationMs` has passed and each client did `minOps`; the clock
 * stops when the last operation in flight ends, so every byte counted was fully moved.
 */
export async function runClients(
  clients: Client[],
  durationMs: number,
  minOps: number,
  op: (client: Client, clientIndex: number, opIndex: number) => Promise<OpResult>,
): Promise<ClientsRun> {
  const started = performance.now();
  const deadline = started + durationMs;
  const ops: OpResult[] = [];
  const errors: string[] = [];
  await Promise.all(
    clients.map(async (client, ci) => {
      for (let i = 0; performance.now() < deadline || i < minOps; i++) {
        try {
          ops.push(await op(client, ci, i));
        } catch (err) {
          errors.push((err as Error).message);
          // A failing client stops rather than spin; the sample is flagged by its error count.
          return;
        }
      }
    }),
  );
  return { elapsedMs: performance.now() - started, ops, errors };
}
