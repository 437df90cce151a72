/**
 * The artifact file service of a real Kagami: release files under a prefix of the registry's
 * listener and on a listener of their own, with the HTTP a download client relies on.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { freePort } from "../helpers/net.ts";
import { hasTool } from "../helpers/tools.ts";
import { rawRequest } from "./raw-request.ts";

const files = mkdtempSync(join(tmpdir(), "kagami-artifacts-"));
const bin = "release/v1.31.0/bin/linux/amd64";
const kubectl = randomBytes(300_000);
const sha256 = `${execFileSync("sha256sum", ["-"], { input: kubectl }).toString().split(" ")[0]}\n`;

function layTree(): void {
  mkdirSync(join(files, bin), { recursive: true });
  writeFileSync(join(files, bin, "kubectl"), kubectl);
  writeFileSync(join(files, bin, "kubectl.sha256"), sha256);
  writeFileSync(join(files, "release/v1.31.0/kubernetes.tar.gz"), randomBytes(1000));
  writeFileSync(join(files, "release/v1.31.0/meta.json"), "{}");
  writeFileSync(join(files, "release/stable.txt"), "v1.31.0\n");
  writeFileSync(join(files, "release/.secret"), "hidden");
  writeFileSync(join(files, "empty"), "");
  symlinkSync("/etc/passwd", join(files, "release/escape"));
  symlinkSync("stable.txt", join(files, "release/latest.txt"));
  // Sparse: a large file that costs no disk, to see memory stay flat while it streams.
  writeFileSync(join(files, "big.bin"), "");
  truncateSync(join(files, "big.bin"), 256 * 1024 * 1024);
}

let k: RunningKagami;
let own: string;
let pre: string;

beforeAll(async () => {
  layTree();
  const port = await freePort();
  k = await startKagami({
    config: { extensions: { artifacts: { rootDirectory: files, pathPrefix: "/artifacts", port } } },
  });
  own = `http://127.0.0.1:${port}`;
  pre = `${k.url}/artifacts`;
}, 30_000);

afterAll(async () => {
  await k?.destroy();
  rmSync(files, { recursive: true, force: true });
});

function noBranding(res: Response | { headers: Record<string, unknown> }, body: string): void {
  const headers =
    res instanceof Response
      ? Object.fromEntries(res.headers.entries())
      : (res.headers as Record<string, unknown>);
  expect(headers.server).toBeUndefined();
  expect(JSON.stringify(headers).toLowerCase()).not.toContain("kagami");
  expect(body.toLowerCase()).not.toContain("kagami");
}

describe.each([
  ["on its own listener", () => own],
  ["below the registry's prefix", () => pre],
])("artifact files %s", (_name, base) => {
  it("serves a release binary and its checksum with validators and content types", async () => {
    const res = await fetch(`${base()}/${bin}/kubectl`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(kubectl)).toBe(true);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("content-length")).toBe(String(kubectl.length));
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(res.headers.get("etag")).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(Date.parse(res.headers.get("last-modified")!)).not.toBeNaN();
    noBranding(res, "");

    const sum = await fetch(`${base()}/${bin}/kubectl.sha256`);
    expect(sum.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await sum.text()).toBe(sha256);
    const types = {
      "release/v1.31.0/kubernetes.tar.gz": "application/gzip",
      "release/v1.31.0/meta.json": "application/json",
      "release/stable.txt": "text/plain; charset=utf-8",
    };
    for (const [path, type] of Object.entries(types)) {
      const r = await fetch(`${base()}/${path}`);
      await r.arrayBuffer();
      expect([path, r.status, r.headers.get("content-type")]).toEqual([path, 200, type]);
    }
  });

  it("answers HEAD with the GET headers and no body", async () => {
    const res = await rawRequest(base(), `${new URL(base()).pathname.replace(/\/$/, "")}/${bin}/kubectl`, {
      method: "HEAD",
    });
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe(String(kubectl.length));
    expect(res.headers["content-type"]).toBe("application/octet-stream");
    expect(res.body.length).toBe(0);
  });

  it("serves single byte ranges, refuses unsatisfiable ones and sends several ranges whole", async () => {
    const url = `${base()}/${bin}/kubectl`;
    const r1 = await fetch(url, { headers: { Range: "bytes=10-19" } });
    expect(r1.status).toBe(206);
    expect(r1.headers.get("content-range")).toBe(`bytes 10-19/${kubectl.length}`);
    expect(Buffer.from(await r1.arrayBuffer()).equals(kubectl.subarray(10, 20))).toBe(true);
    const r2 = await fetch(url, { headers: { Range: "bytes=-5" } });
    expect(r2.status).toBe(206);
    expect(Buffer.from(await r2.arrayBuffer()).equals(kubectl.subarray(kubectl.length - 5))).toBe(true);
    const r3 = await fetch(url, { headers: { Range: `bytes=${kubectl.length - 3}-` } });
    expect(r3.headers.get("content-range")).toBe(
      `bytes ${kubectl.length - 3}-${kubectl.length - 1}/${kubectl.length}`,
    );
    await r3.arrayBuffer();
    const r4 = await fetch(url, { headers: { Range: `bytes=${kubectl.length}-` } });
    expect(r4.status).toBe(416);
    expect(r4.headers.get("content-range")).toBe(`bytes */${kubectl.length}`);
    await r4.arrayBuffer();
    const r5 = await fetch(url, { headers: { Range: "bytes=0-1,5-6" } });
    expect(r5.status).toBe(200);
    expect((await r5.arrayBuffer()).byteLength).toBe(kubectl.length);
    // If-Range naming another version: the whole (new) file, not a piece of it.
    const r6 = await fetch(url, { headers: { Range: "bytes=0-1", "If-Range": '"0-0"' } });
    expect(r6.status).toBe(200);
    await r6.arrayBuffer();
  });

  it("answers conditional requests with 304", async () => {
    const url = `${base()}/${bin}/kubectl`;
    const first = await fetch(url);
    await first.arrayBuffer();
    const etag = first.headers.get("etag")!;
    const lastModified = first.headers.get("last-modified")!;
    const a = await fetch(url, { headers: { "If-None-Match": `"x", ${etag}` } });
    expect(a.status).toBe(304);
    expect(a.headers.get("etag")).toBe(etag);
    const b = await fetch(url, { headers: { "If-Modified-Since": lastModified } });
    expect(b.status).toBe(304);
    // If-None-Match decides when both are sent.
    const c = await fetch(url, {
      headers: { "If-None-Match": '"other"', "If-Modified-Since": lastModified },
    });
    expect(c.status).toBe(200);
    await c.arrayBuffer();
  });

  it("follows a symlink inside the root but none that leaves it, and hides dot files", async () => {
    const inside = await fetch(`${base()}/release/latest.txt`);
    expect([inside.status, await inside.text()]).toEqual([200, "v1.31.0\n"]);
    const outside = await fetch(`${base()}/release/escape`);
    expect(outside.status).toBe(404);
    expect(await outside.text()).not.toContain("root:");
    const dot = await fetch(`${base()}/release/.secret`);
    expect([dot.status, await dot.text()]).toEqual([404, "Not Found\n"]);
  });

  it("makes path traversal impossible", async () => {
    const p = new URL(base()).pathname.replace(/\/$/, "");
    const attempts: [string, number][] = [
      [`${p}/release/../../../etc/passwd`, 400],
      [`${p}/release/%2e%2e/%2e%2e/etc/passwd`, 400],
      [`${p}/release%2f..%2f..%2fetc%2fpasswd`, 400],
      [`${p}/release/..%5c..%5cetc%5cpasswd`, 400],
      [`${p}/release/stable.txt%00.sha256`, 400],
      [`${p}/release//stable.txt`, 400],
      [`${p}/release/%ff`, 400],
      [`${p}/release/./stable.txt`, 400],
      [`${p}/no/such/file`, 404],
    ];
    for (const [path, status] of attempts) {
      const res = await rawRequest(base(), path);
      expect([path, res.status]).toEqual([path, status]);
      expect(res.body.toString()).not.toContain("root:");
      noBranding(res, res.body.toString());
    }
  });

  it("answers names too long for the file system with 404, not a server error", async () => {
    const p = new URL(base()).pathname.replace(/\/$/, "");
    // One name over NAME_MAX; a path over PATH_MAX; and one under PATH_MAX that the root's own
    // path pushes over it, which only the file system can tell.
    const long = (n: number) => Array.from({ length: n }, () => "a".repeat(200)).join("/");
    for (const path of [
      `${p}/release/${"a".repeat(300)}`,
      `${p}/release/${long(25)}`,
      `${p}/${long(20)}/${"b".repeat(4080 - 20 * 201 - p.length)}`,
    ]) {
      const res = await rawRequest(base(), path);
      expect([path.length, res.status]).toEqual([path.length, 404]);
      noBranding(res, res.body.toString());
    }
  });

  it("lists no directories when listing is off", async () => {
    for (const path of ["/", "/release/", "/release"]) {
      const res = await fetch(`${base()}${path}`, { redirect: "manual" });
      expect([path, res.status]).toEqual([path, 404]);
      await res.arrayBuffer();
    }
  });

  it("refuses other methods with 405 and Allow", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const res = await fetch(`${base()}/${bin}/kubectl`, { method });
      expect([method, res.status, res.headers.get("allow")]).toEqual([method, 405, "GET, HEAD"]);
      noBranding(res, await res.text());
    }
  });

  it("serves an empty file", async () => {
    const res = await fetch(`${base()}/empty`);
    expect([res.status, res.headers.get("content-length"), await res.text()]).toEqual([200, "0", ""]);
  });
});

describe("artifact files beside the registry", () => {
  it("leave the registry's own endpoints as they were", async () => {
    const res = await fetch(`${k.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    // Only the prefix as a whole path segment is the file service's.
    const other = await fetch(`${k.url}/artifactsX/release/stable.txt`);
    expect(other.status).toBe(404);
    expect(other.headers.get("content-type")).toContain("application/json");
  });

  it("close every file they open, whatever the answer", async () => {
    const fds = () => readdirSync(`/proc/${k.proc.pid}/fd`).length;
    const before = fds();
    const url = `${own}/${bin}/kubectl`;
    for (let i = 0; i < 50; i++) {
      const answers = await Promise.all([
        fetch(url, { headers: { Range: `bytes=${kubectl.length}-` } }),
        fetch(url, { headers: { "If-None-Match": "*" } }),
        fetch(url, { method: "HEAD" }),
        fetch(`${own}/release/stable.txt/`),
      ]);
      expect(answers.map((r) => r.status)).toEqual([416, 304, 200, 404]);
      await Promise.all(answers.map((r) => r.arrayBuffer()));
    }
    // Connections come and go; 200 leaked handles would not.
    expect(fds() - before).toBeLessThan(40);
  });

  it("stream a large file without holding it in memory", async () => {
    const res = await fetch(`${own}/big.bin`);
    let n = 0;
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) n += chunk.length;
    expect(n).toBe(256 * 1024 * 1024);
    const status = readFileSync(`/proc/${k.proc.pid}/status`, "utf8");
    const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
    // Well under the file's 256 MiB: the body went out in bounded chunks.
    expect(peakKb).toBeLessThan(200 * 1024);
  });

  it.skipIf(!hasTool("curl"))("downloads with curl, resumes a partial download, and checks the sum", () => {
    const dir = mkdtempSync(join(tmpdir(), "kagami-curl-"));
    try {
      const out = join(dir, "kubectl");
      writeFileSync(out, kubectl.subarray(0, 1000));
      execFileSync("curl", ["-fsS", "-C", "-", "-o", out, `${own}/${bin}/kubectl`]);
      execFileSync("curl", ["-fsS", "-o", `${out}.sha256`, `${pre}/${bin}/kubectl.sha256`]);
      expect(readFileSync(out).equals(kubectl)).toBe(true);
      const check = execFileSync("sh", ["-c", `echo "$(cat kubectl.sha256)  kubectl" | sha256sum --check`], {
        cwd: dir,
      }).toString();
      expect(check).toContain("kubectl: OK");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("artifact listing when enabled", () => {
  let lk: RunningKagami;
  beforeAll(async () => {
    lk = await startKagami({
      config: { extensions: { artifacts: { rootDirectory: files, pathPrefix: "/dl", listing: true } } },
    });
  }, 30_000);
  afterAll(async () => {
    await lk?.destroy();
  });

  it("lists a directory in plain, unbranded HTML without dot files", async () => {
    const res = await fetch(`${lk.url}/dl/release/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await res.text();
    expect(html).toContain('<a href="v1.31.0/">v1.31.0/</a>');
    expect(html).toContain('<a href="stable.txt">stable.txt</a>');
    expect(html).not.toContain(".secret");
    noBranding(res, html);
  });

  it("sends a directory named without its slash to the slashed name", async () => {
    const res = await fetch(`${lk.url}/dl/release`, { redirect: "manual" });
    expect([res.status, res.headers.get("location")]).toEqual([301, "/dl/release/"]);
    const root = await fetch(`${lk.url}/dl`, { redirect: "manual" });
    expect([root.status, root.headers.get("location")]).toEqual([301, "/dl/"]);
  });
});
