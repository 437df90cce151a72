// Probe: a request that declares a huge Content-Length and sends a few bytes: what does
// kagami_http_request_bytes_total count?
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const d = mkdtempSync(join(tmpdir(), "adv15-bytes-"));
const port = 20000 + Math.floor(Math.random() * 20000);
writeFileSync(
  join(d, "c.json"),
  JSON.stringify({
    distSpecVersion: "1.1.0",
    storage: { rootDirectory: join(d, "data") },
    http: { address: "127.0.0.1", port: String(port) },
    extensions: { metrics: { enable: true } },
    log: { level: "info" },
  }),
);
const p = spawn(process.execPath, ["dist/cli/main.js", "serve", "--config", join(d, "c.json")], {
  stdio: ["ignore", "pipe", "inherit"],
});
p.stdout.on("data", (b) => {
  for (const l of String(b).split("\n")) if (l.trim()) console.log("LOG", l.slice(0, 300));
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let i = 0; i < 50; i++) {
  try {
    await fetch(`http://127.0.0.1:${port}/livez`);
    break;
  } catch {
    await sleep(200);
  }
}
const start = await fetch(`http://127.0.0.1:${port}/v2/x/blobs/uploads/`, { method: "POST" });
const loc = start.headers.get("location");
await new Promise((resolve) => {
  const s = net.connect(port, "127.0.0.1", () => {
    s.write(
      `PATCH ${loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000000\r\n\r\nabcdef`,
    );
    setTimeout(() => {
      s.end();
      resolve();
    }, 300);
  });
});
await sleep(3000);
const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
console.log(
  loc,
  text
    .split("\n")
    .filter((l) => l.includes("request_bytes") || l.includes("upload"))
    .join("\n"),
);
p.kill();
