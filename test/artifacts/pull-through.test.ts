/**
 * Artifact pull-through from a real file host (nginx) on loopback: a miss is fetched once,
 * verified against the upstream's checksum files, stored atomically, and survives a restart.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { type RunningNginx, startNginx } from "../helpers/nginx.ts";
import { hasTool } from "../helpers/tools.ts";

const peers = hasTool("nginx");
const hex = (alg: string, b: Buffer) => createHash(alg).update(b).digest("hex");

let host: RunningNginx;
let k: RunningKagami;
let files: string;
let stateDir: string;

function publish(path: string, body: Buffer, sums: { sha256?: string; sha512?: string } = {}): void {
  const full = join(host.root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, body);
  if (sums.sha256 !== undefined) writeFileSync(`${full}.sha256`, sums.sha256);
  if (sums.sha512 !== undefined) writeFileSync(`${full}.sha512`, sums.sha512);
}

async function start(): Promise<RunningKagami> {
  return startKagami({
    rootDir: stateDir,
    config: {
      extensions: {
        artifacts: {
          rootDirectory: files,
          pathPrefix: "/dl",
          upstream: { url: host.url, negativeCacheTTL: "1h" },
        },
      },
    },
  });
}

describe.skipIf(!peers)("artifact pull-through", () => {
  beforeAll(async () => {
    host = await startNginx({
      locations: "location /dl/ { rewrite ^/dl/(.*)$ /cdn/$1 redirect; } location /listed/ { autoindex on; }",
    });
    files = mkdtempSync(join(tmpdir(), "kagami-artifacts-pt-"));
    stateDir = mkdtempSync(join(tmpdir(), "kagami-artifacts-state-"));
    k = await start();
  }, 30_000);

  afterAll(async () => {
    await k?.stop();
    await host?.stop();
    rmSync(files, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("fetches a miss, verifies it against both checksums, and keeps the checksum files", async () => {
    const body = randomBytes(500_000);
    const path = "release/v1.31.0/bin/linux/amd64/kubectl";
    publish(path, body, { sha256: `${hex("sha256", body)}\n`, sha512: `${hex("sha512", body)}  kubectl\n` });
    const res = await fetch(`${k.url}/dl/${path}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    expect(readFileSync(join(files, path)).equals(body)).toBe(true);
    expect(readFileSync(join(files, `${path}.sha256`), "utf8")).toBe(`${hex("sha256", body)}\n`);
    expect(existsSync(join(files, `${path}.sha512`))).toBe(true);
    const sum = await fetch(`${k.url}/dl/${path}.sha256`);
    expect(await sum.text()).toBe(`${hex("sha256", body)}\n`);
    // Served locally from now on, with ranges like any file.
    const part = await fetch(`${k.url}/dl/${path}`, { headers: { Range: "bytes=0-99" } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(0, 100))).toBe(true);
    expect(await host.count(`/${path}`)).toBe(1);
    // The upstream's Last-Modified, so every mirror of the file sends the same one.
    const upstream = await fetch(`${host.url}/${path}`, { method: "HEAD" });
    expect(res.headers.get("last-modified")).toBe(upstream.headers.get("last-modified"));
  });

  it("answers 502 for a file that does not match its checksum and stores nothing", async () => {
    const good = randomBytes(10_000);
    const path = "release/v1.31.0/bin/linux/amd64/kubeadm";
    const corrupt = Buffer.from(good);
    corrupt[5] = corrupt[5]! ^ 0xff;
    publish(path, corrupt, { sha256: `${hex("sha256", good)}\n` });
    const res = await fetch(`${k.url}/dl/${path}`);
    expect(res.status).toBe(502);
    const text = await res.text();
    expect(text).toContain("sha256");
    expect(text.toLowerCase()).not.toContain("kagami");
    expect(existsSync(join(files, path))).toBe(false);
    expect(existsSync(join(files, `${path}.sha256`))).toBe(false);
    expect(readdirSync(join(files, ".incoming"))).toEqual([]);
    // Not cached as absent or as good: fixed upstream, the next request gets it.
    publish(path, good);
    const again = await fetch(`${k.url}/dl/${path}`);
    expect(again.status).toBe(200);
    expect(Buffer.from(await again.arrayBuffer()).equals(good)).toBe(true);
  });

  it("answers 502 when the upstream's checksum file is not a checksum", async () => {
    const path = "release/v1.31.0/bin/linux/amd64/kubelet";
    publish(path, randomBytes(100), { sha512: "<html>not here</html>" });
    const res = await fetch(`${k.url}/dl/${path}`);
    expect(res.status).toBe(502);
    await res.arrayBuffer();
    expect(existsSync(join(files, path))).toBe(false);
  });

  it("serves a file the upstream publishes no checksum for, and a checksum file unverified", async () => {
    publish("release/stable.txt", Buffer.from("v1.31.0\n"));
    const res = await fetch(`${k.url}/dl/release/stable.txt`);
    expect([res.status, await res.text()]).toEqual([200, "v1.31.0\n"]);
    publish("release/other.sha256", Buffer.from("not checked\n"));
    const sum = await fetch(`${k.url}/dl/release/other.sha256`);
    expect([sum.status, await sum.text()]).toEqual([200, "not checked\n"]);
  });

  it("answers 404 for what the upstream lacks and remembers it for a while", async () => {
    const path = "/release/v9.9.9/none";
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${k.url}/dl${path}`);
      expect([res.status, await res.text()]).toEqual([404, "Not Found\n"]);
    }
    expect(await host.count(path)).toBe(1);
  });

  it("takes a directory the upstream lists for a miss, never storing the listing as a file", async () => {
    // nginx with autoindex sends /listed/v1 on to /listed/v1/ and lists it: stored as a file
    // named v1, that page would stand where the directory belongs and break every file below it.
    const body = randomBytes(1000);
    publish("listed/v1/kubectl", body, { sha256: hex("sha256", body) });
    const dir = await fetch(`${k.url}/dl/listed/v1`);
    expect([dir.status, await dir.text()]).toEqual([404, "Not Found\n"]);
    expect(existsSync(join(files, "listed/v1"))).toBe(false);
    const file = await fetch(`${k.url}/dl/listed/v1/kubectl`);
    expect(file.status).toBe(200);
    expect(Buffer.from(await file.arrayBuffer()).equals(body)).toBe(true);
  });

  it("fetches a file once for 20 concurrent misses", async () => {
    const body = randomBytes(4 * 1024 * 1024);
    const path = "release/v1.32.0/bin/linux/arm64/kubectl";
    publish(path, body, { sha256: hex("sha256", body) });
    const results = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await fetch(`${k.url}/dl/${path}`);
        return { status: res.status, same: Buffer.from(await res.arrayBuffer()).equals(body) };
      }),
    );
    expect(results).toEqual(Array.from({ length: 20 }, () => ({ status: 200, same: true })));
    expect(await host.count(`/${path}`)).toBe(1);
    expect(await host.count(`/${path}.sha256`)).toBe(1);
  });

  it("follows the upstream's redirects to where the files are (as dl.k8s.io sends clients to its CDN)", async () => {
    const body = randomBytes(20_000);
    const path = "release/v1.30.0/bin/linux/amd64/kubectl";
    publish(`cdn/${path}`, body, { sha256: hex("sha256", body) });
    const redirected = await startKagami({
      config: {
        extensions: {
          artifacts: {
            rootDirectory: join(stateDir, "via-cdn"),
            pathPrefix: "/dl",
            upstream: { url: `${host.url}/dl` },
          },
        },
      },
    });
    try {
      const res = await fetch(`${redirected.url}/dl/${path}`);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
      expect(await host.count(`/dl/${path}`)).toBe(1);
      expect(await host.count(`/cdn/${path}`)).toBe(1);
      expect(await host.count(`/cdn/${path}.sha256`)).toBe(1);
    } finally {
      await redirected.destroy();
    }
  });

  it("answers 504 when the upstream stalls, and stores nothing", async () => {
    const stalled = createServer((_req, res) => {
      res.writeHead(200, { "Content-Length": "1000" });
      res.write("partial");
    });
    await new Promise<void>((resolve) => stalled.listen(0, "127.0.0.1", resolve));
    const port = (stalled.address() as AddressInfo).port;
    const root = join(stateDir, "stalled");
    const slow = await startKagami({
      config: {
        extensions: {
          artifacts: {
            rootDirectory: root,
            pathPrefix: "/dl",
            upstream: { url: `http://127.0.0.1:${port}`, timeout: "1s", verifyChecksums: false },
          },
        },
      },
    });
    try {
      const res = await fetch(`${slow.url}/dl/release/kubectl`);
      expect(res.status).toBe(504);
      await res.arrayBuffer();
      expect(existsSync(join(root, "release/kubectl"))).toBe(false);
      expect(readdirSync(join(root, ".incoming"))).toEqual([]);
    } finally {
      await slow.destroy();
      stalled.closeAllConnections();
      stalled.close();
    }
  });

  it("keeps fetched files across a restart, without the upstream", async () => {
    await k.stop();
    await host.stop();
    k = await start();
    const res = await fetch(`${k.url}/dl/release/v1.31.0/bin/linux/amd64/kubectl.sha256`);
    expect(res.status).toBe(200);
    const body = await fetch(`${k.url}/dl/release/v1.31.0/bin/linux/amd64/kubectl`);
    expect(body.status).toBe(200);
    expect(hex("sha256", Buffer.from(await body.arrayBuffer()))).toBe((await res.text()).trim());
    // A miss with the upstream gone is the upstream's failure, not a missing file.
    const miss = await fetch(`${k.url}/dl/release/v2.0.0/kubectl`);
    expect(miss.status).toBe(502);
    await miss.arrayBuffer();
  });
});
