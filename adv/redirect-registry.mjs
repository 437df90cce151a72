// Probe: a registry that wants basic auth and redirects blob downloads to another port (which logs headers).

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
const [port, other] = process.argv.slice(2).map(Number);
createServer((req, res) => {
  if (!req.headers.authorization) {
    res.statusCode = 401;
    res.setHeader("www-authenticate", 'Basic realm="x"');
    return res.end();
  }
  if (req.url === "/v2/") return res.end("{}");
  if (req.url.includes("/blobs/")) {
    res.statusCode = 307;
    res.setHeader("location", `http://127.0.0.1:${other}/blob`);
    return res.end();
  }
  if (req.url.includes("/manifests/")) {
    res.setHeader("content-type", "application/vnd.oci.image.manifest.v1+json");
    res.setHeader("docker-content-digest", sha(manifest));
    res.setHeader("content-length", manifest.length);
    return res.end(req.method === "HEAD" ? undefined : manifest);
  }
  res.statusCode = 404;
  res.end();
}).listen(port, "127.0.0.1");
createServer((req, res) => {
  process.stderr.write(`OTHER ${req.method} ${req.url} auth=${req.headers.authorization ?? "-"}\n`);
  res.setHeader("content-length", cfg.length);
  res.end(cfg);
}).listen(other, "127.0.0.1");
