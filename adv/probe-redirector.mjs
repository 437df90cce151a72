// Throwaway probe: drive the Redirector with archeio's handler-table cases and XFF edge cases.

import http from "node:http";
import { Redirector } from "../dist/redirect/redirector.js";
import { RedirectRules } from "../dist/redirect/rules.js";

const srv = http.createServer((req, res) => {
  res.statusCode = req.url.includes("da86") ? 200 : 404;
  res.end();
});
await new Promise((r) => srv.listen(0, "127.0.0.1", r));
const copy = `http://127.0.0.1:${srv.address().port}`;
const cfg = {
  mode: "redirector",
  trustedProxies: ["10.0.0.1/32"],
  trustedHops: 2,
  rules: [
    {
      name: "eu",
      baseUrl: copy,
      layout: "archeio",
      networks: ["35.180.0.0/16", "2001:db8::/32"],
      networkFiles: [],
    },
  ],
  checkTimeoutMs: 1000,
  checkCacheTtlMs: 60000,
  upstream: { url: "https://us-central1-docker.pkg.dev", pathPrefix: "k8s-artifacts-prod/images" },
  pages: { "/": "https://info", "/privacy": "https://privacy" },
};
const rules = RedirectRules.load(cfg);
const r = new Redirector(cfg, rules);
const D = "sha256:da86e6ba6ca197bf6bc5e9d900febd906b133eaa4750e6bed647b0fbe50ed43e";
const cases = [
  ["GET", "/", "1.1.1.1"],
  ["GET", "/privacy", "1.1.1.1"],
  ["GET", "/privacy/", "1.1.1.1"],
  ["GET", "/v3/", "1.1.1.1"],
  ["GET", "/v2/", "1.1.1.1"],
  ["GET", "/v2", "1.1.1.1"],
  ["HEAD", "/v2", "1.1.1.1"],
  ["POST", "/v2/", "1.1.1.1"],
  ["OPTIONS", "/v2/", "1.1.1.1"],
  ["GET", "/v2/pause/manifests/latest", "1.1.1.1"],
  ["GET", "/v2/pause/tags/list", "1.1.1.1", undefined, "?n=0"],
  ["GET", `/v2/pause/blobs/${D}`, "1.1.1.1"],
  ["GET", `/v2/pause/blobs/${D}`, "35.180.1.1"],
  ["GET", `/v2/pause/blobs/${D}`, "::ffff:35.180.1.1"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "35.180.1.1, 10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "35.180.1.1"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "garbage, 35.180.1.1, 10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "[2001:db8::1], 10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "35.180.1.1:1234, 10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "fe80::1%eth0, 10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "2001:db8::1, 10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "35.180.1.1,,10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "10.0.0.1", "35.180.1.1, 10.9.9.9,"],
  ["GET", `/v2/pause/blobs/${D}`, "1.1.1.1", "35.180.1.1, 10.9.9.9"],
  ["GET", `/v2/pause/blobs/${D}`, "35.180.1.1asdf"],
  ["GET", `/v2/pause/manifests/latest`, "35.180.1.1asdf"],
  ["GET", "/v2/_catalog", "1.1.1.1"],
  ["GET", "/v2/_catalog?n=1", "1.1.1.1"],
  ["GET", `/v2/pause/manifests/sha256-${"da".repeat(32)}.sig`, "1.1.1.1"],
  ["GET", "/v2/../etc/passwd", "1.1.1.1"],
  ["GET", "/v2/%2e%2e/x/manifests/a", "1.1.1.1"],
  ["GET", "/v2/foo//manifests/a", "1.1.1.1"],
  ["GET", "/v2foo", "1.1.1.1"],
  ["GET", "/v2/%2E./x", "1.1.1.1"],
  ["GET", "/v2/x/blobs/..%2f..%2fsha256:abc", "1.1.1.1"],
  ["GET", "/v2/x\\..\\y/manifests/a", "1.1.1.1"],
];
for (const [method, path, peer, fwd, search] of cases) {
  let a;
  try {
    a = await r.answer({ method, path, search: search ?? "", peer, forwarded: fwd });
  } catch (e) {
    a = { THREW: String(e) };
  }
  console.log(method, path + (search ?? ""), peer, fwd ?? "", "=>", JSON.stringify(a));
}
srv.close();
