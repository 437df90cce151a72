// Probe helper: node adv/push.mjs BASE REPO TAG [index] — pushes a small random image (or a 3-platform index).
import { createHash, randomBytes } from "node:crypto";

const [base, repo, tag, kind] = process.argv.slice(2);
const sha = (b) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
async function blob(data) {
  const d = sha(data);
  let r = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  const loc = new URL(r.headers.get("location"), base);
  loc.searchParams.set("digest", d);
  r = await fetch(loc, {
    method: "PUT",
    body: data,
    headers: { "content-type": "application/octet-stream" },
  });
  if (r.status !== 201) throw new Error(`blob ${r.status}`);
  return d;
}
async function image(os, arch, variant, ref) {
  const cfg = Buffer.from(
    JSON.stringify({ os, architecture: arch, variant, n: randomBytes(4).toString("hex") }),
  );
  const layer = randomBytes(512);
  await blob(cfg);
  await blob(layer);
  const m = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha(cfg), size: cfg.length },
      layers: [
        { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha(layer), size: layer.length },
      ],
    }),
  );
  const r = await fetch(`${base}/v2/${repo}/manifests/${ref ?? sha(m)}`, {
    method: "PUT",
    body: m,
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
  });
  if (r.status !== 201) throw new Error(`manifest ${r.status} ${await r.text()}`);
  return {
    digest: sha(m),
    size: m.length,
    platform: variant ? { os, architecture: arch, variant } : { os, architecture: arch },
  };
}
if (kind === "index") {
  const kids = [
    await image("linux", "amd64"),
    await image("linux", "arm64"),
    await image("linux", "arm", "v7"),
  ];
  const idx = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: kids.map((k) => ({ mediaType: "application/vnd.oci.image.manifest.v1+json", ...k })),
    }),
  );
  const r = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    body: idx,
    headers: { "content-type": "application/vnd.oci.image.index.v1+json" },
  });
  if (r.status !== 201) throw new Error(`index ${r.status}`);
  console.log(sha(idx));
} else console.log((await image("linux", "amd64", undefined, tag)).digest);
