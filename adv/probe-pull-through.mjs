// Throwaway probe: artifacts pull-through against a hostile upstream.

import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArtifactPuller } from "../dist/artifacts/pull-through.js";

const good = Buffer.from("kubectl-binary\n");
const sha = (b, a = "sha256") => createHash(a).update(b).digest("hex");
const hits = {};
const srv = http.createServer((req, res) => {
  hits[req.url] = (hits[req.url] ?? 0) + 1;
  const u = req.url;
  if (u === "/ok/kubectl") return setTimeout(() => res.end(good), 200);
  if (u === "/ok/kubectl.sha256") return res.end(`${sha(good)}  kubectl\n`);
  if (u === "/bad/kubectl") return res.end("evil");
  if (u === "/bad/kubectl.sha256") return res.end(sha(good));
  if (u === "/file/kubectl") {
    res.writeHead(302, { location: "file:///etc/passwd" });
    return res.end();
  }
  if (u === "/trunc/kubectl") {
    res.writeHead(200, { "content-length": "1000" });
    res.write("x".repeat(10));
    return setTimeout(() => res.destroy(), 50);
  }
  if (u === "/forbidden/kubectl") return res.end(good);
  if (u.startsWith("/forbidden/kubectl.")) {
    res.statusCode = 403;
    return res.end("AccessDenied");
  }
  if (u === "/html/kubectl") return res.end(good);
  if (u.startsWith("/html/kubectl.")) return res.end("<html>soft 404</html>");
  if (u === "/slow/kubectl") {
    res.writeHead(200);
    res.write("a");
    return;
  }
  if (u === "/dir/a") return res.end("file a");
  res.statusCode = 404;
  res.end();
});
await new Promise((r) => srv.listen(0, "127.0.0.1", r));
const root = mkdtempSync(join(tmpdir(), "adv14-pt-"));
const p = new ArtifactPuller(root, {
  url: `http://127.0.0.1:${srv.address().port}`,
  verifyChecksums: true,
  timeoutMs: 1500,
  negativeCacheTtlMs: 1000,
});
await p.init();
const tryIt = async (segs) => {
  try {
    return await p.ensure(segs);
  } catch (e) {
    return `${e.name} ${e.status} ${e.message}`;
  }
};
console.log(
  "concurrent ok:",
  (await Promise.all(Array.from({ length: 20 }, () => tryIt(["ok", "kubectl"])))).every((x) => x === true),
  hits["/ok/kubectl"],
);
for (const d of ["bad", "file", "trunc", "forbidden", "html", "slow", "missing"])
  console.log(d, await tryIt([d, "kubectl"]), existsSync(join(root, d, "kubectl")));
console.log("dir a then a/b:", await tryIt(["dir", "a"]), await tryIt(["dir", "a", "b"]));
console.log("leftover temp:", readdirSync(join(root, ".incoming")));
srv.closeAllConnections();
srv.close();
