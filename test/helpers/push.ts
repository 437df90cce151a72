import { createHash, randomBytes } from "node:crypto";

export const ociManifest = "application/vnd.oci.image.manifest.v1+json";
export const ociIndex = "application/vnd.oci.image.index.v1+json";

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Monolithic blob push (POST ?digest=), falling back to POST + PUT where a registry (distribution) wants that. */
export async function pushBlob(base: string, repo: string, data: Uint8Array): Promise<string> {
  const digest = sha256(data);
  let res = await fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: data,
    headers: { "Content-Type": "application/octet-stream" },
  });
  if (res.status === 202) {
    const location = new URL(res.headers.get("location")!, base);
    location.searchParams.set("digest", digest);
    res = await fetch(location, {
      method: "PUT",
      body: data,
      headers: { "Content-Type": "application/octet-stream" },
    });
  }
  if (res.status !== 201) throw new Error(`blob push ${res.status}: ${await res.text()}`);
  return digest;
}

/** An OCI image manifest of these config and layer bytes, with `extra` fields (annotations, subject). */
export function imageManifest(config: Buffer, layers: Buffer[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifest,
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: sha256(config),
        size: config.length,
      },
      layers: layers.map((l) => ({
        mediaType: "application/vnd.oci.image.layer.v1.tar",
        digest: sha256(l),
        size: l.length,
      })),
      ...extra,
    }),
  );
}

export interface PushedImage {
  digest: string;
  manifest: Buffer;
  config: string;
  layers: string[];
}

/** Pushes a small random image: one config, `layers` layers, then the manifest under `tag`. */
export async function pushImage(
  base: string,
  repo: string,
  tag: string,
  opts: { layers?: number; extra?: Record<string, unknown> } = {},
): Promise<PushedImage> {
  const configBytes = Buffer.from(
    JSON.stringify({ architecture: "amd64", os: "linux", nonce: randomBytes(8).toString("hex") }),
  );
  const config = await pushBlob(base, repo, configBytes);
  const layerData = Array.from({ length: opts.layers ?? 1 }, () => randomBytes(1024));
  const layers: string[] = [];
  for (const l of layerData) layers.push(await pushBlob(base, repo, l));
  const manifest = imageManifest(configBytes, layerData, opts.extra);
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    body: manifest,
    headers: { "Content-Type": ociManifest },
  });
  if (res.status !== 201) throw new Error(`manifest push ${res.status}: ${await res.text()}`);
  return { digest: sha256(manifest), manifest, config, layers };
}

/** The spec's error code of a response body, for assertions. */
export async function errorCode(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { errors?: { code: string }[] };
  return body.errors?.[0]?.code;
}
