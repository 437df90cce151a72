// Throwaway probe: an upstream with directory listings (nginx autoindex, a Kagami with listing on)
// answers /release/v1 with 301 -> /release/v1/ -> 200 HTML. Is that stored as a *file* named v1,
// blocking every file below it?

import { mkdtempSync, statSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArtifactPuller } from "../dist/artifacts/pull-through.js";

const srv = http.createServer((req, res) => {
  if (req.url === "/release/v1") {
    res.writeHead(301, { location: "/release/v1/" });
    return res.end();
  }
  if (req.url === "/release/v1/") return res.end("<html>Index of /release/v1/</html>");
  if (req.url === "/release/v1/kubectl") return res.end("binary");
  res.statusCode = 404;
  res.end();
});
await new Promise((r) => srv.listen(0, "127.0.0.1", r));
const root = mkdtempSync(join(tmpdir(), "adv14-dir-"));
const p = new ArtifactPuller(root, {
  url: `http://127.0.0.1:${srv.address().port}`,
  verifyChecksums: true,
  timeoutMs: 2000,
  negativeCacheTtlMs: 1000,
});
await p.init();
const tryIt = async (s) => {
  try {
    return await p.ensure(s);
  } catch (e) {
    return `${e.name}: ${e.message}`;
  }
};
console.log("release/v1 ->", await tryIt(["release", "v1"]));
try {
  console.log("stored as", statSync(join(root, "release/v1")).isFile() ? "FILE" : "dir");
} catch {
  console.log("not stored");
}
console.log("release/v1/kubectl ->", await tryIt(["release", "v1", "kubectl"]));
srv.close();
