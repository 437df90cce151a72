import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { bigDigest, bigStream } from "../helpers/bigdata.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushImage, sha256 } from "../helpers/push.ts";

const MiB = 1024 * 1024;
let servers: RunningKagami[] = [];
afterEach(async () => {
  for (const s of servers) await s.destroy();
  servers = [];
});

async function start(rootDir?: string): Promise<RunningKagami> {
  const s = await startKagami(rootDir ? { rootDir } : {});
  servers.push(s);
  return s;
}

/** Every file in the blob store must hash to its own name: nothing partial, nothing corrupt. */
async function assertBlobStoreIntact(rootDir: string): Promise<number> {
  const base = join(rootDir, "data", "blobs", "sha256");
  let count = 0;
  for (const prefix of await readdir(base)) {
    for (const name of await readdir(join(base, prefix))) {
      const hash = createHash("sha256");
      for await (const chunk of createReadStream(join(base, prefix, name))) hash.update(chunk as Buffer);
      expect(hash.digest("hex"), `blob file ${name}`).toBe(name);
      count++;
    }
  }
  return count;
}

/** Streams `size` bytes into an upload; resolves once `killAt` bytes were written (then the caller kills the server). */
function streamUntil(url: string, size: number, killAt: number, onKillPoint: () => void): Promise<void> {
  return new Promise((resolve) => {
    const req = request(url, { method: "PATCH", headers: { "Content-Type": "application/octet-stream" } });
    req.on("error", () => resolve());
    req.on("response", (res) => {
      res.resume();
      resolve();
    });
    let sent = 0;
    let fired = false;
    const src = bigStream(size);
    src.on("data", (chunk: Buffer) => {
      sent += chunk.length;
      if (!req.write(chunk)) {
        src.pause();
        req.once("drain", () => src.resume());
      }
      if (!fired && sent >= killAt) {
        fired = true;
        onKillPoint();
      }
    });
    src.on("end", () => req.end());
    req.on("close", () => {
      src.destroy();
      resolve();
    });
  });
}

describe("durability", () => {
  it("keeps what was pushed and shows no partial blob after kill -9 in the middle of a large push", async () => {
    const size = 256 * MiB;
    const bigDigestP = bigDigest(size);
    const first = await start();
    const before = await pushImage(first.url, "keep/me", "v1", { layers: 3 });

    const post = await fetch(`${first.url}/v2/big/blob/blobs/uploads/`, { method: "POST" });
    expect(post.status).toBe(202);
    const location = post.headers.get("location")!;
    await streamUntil(`${first.url}${location}`, size, 96 * MiB, () => {
      first.proc.kill("SIGKILL");
    });
    await new Promise((r) =>
      first.proc.exitCode === null && first.proc.signalCode === null ? first.proc.once("exit", r) : r(null),
    );

    const second = await start(first.rootDir);
    const digest = await bigDigestP;
    const head = await fetch(`${second.url}/v2/big/blob/blobs/${digest}`, { method: "HEAD" });
    expect(head.status).toBe(404);

    // Everything pushed before the crash is still there, byte for byte.
    const m = await fetch(`${second.url}/v2/keep/me/manifests/v1`);
    expect(m.status).toBe(200);
    const body = Buffer.from(await m.arrayBuffer());
    expect(sha256(body)).toBe(before.digest);
    for (const layer of [before.config, ...before.layers]) {
      const res = await fetch(`${second.url}/v2/keep/me/blobs/${layer}`);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer);
    }
    await assertBlobStoreIntact(first.rootDir);

    // The interrupted upload survived the crash: its status says how far it got, and it can be finished.
    const status = await fetch(`${second.url}${location}`);
    expect(status.status).toBe(204);
    const range = status.headers.get("range")!;
    const offset = Number(range.split("-")[1]) + 1;
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(size);
    const finish = await new Promise<number>((resolve, reject) => {
      const req = request(`${second.url}${location}?digest=${digest}`, {
        method: "PUT",
        headers: { "Content-Range": `${offset}-${size - 1}`, "Content-Length": String(size - offset) },
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      bigStream(size, offset).pipe(req);
    });
    expect(finish).toBe(201);
    const after = await fetch(`${second.url}/v2/big/blob/blobs/${digest}`, { method: "HEAD" });
    expect(after.status).toBe(200);
    expect(after.headers.get("content-length")).toBe(String(size));
    expect(await assertBlobStoreIntact(first.rootDir)).toBeGreaterThanOrEqual(5);
  }, 180_000);

  it("survives a graceful restart with tags, manifests and upload sessions intact", async () => {
    const first = await start();
    const img = await pushImage(first.url, "a/b", "latest");
    const post = await fetch(`${first.url}/v2/a/b/blobs/uploads/`, { method: "POST" });
    const location = post.headers.get("location")!;
    const part = Buffer.from("hello, ");
    const patch = await fetch(`${first.url}${location}`, {
      method: "PATCH",
      body: part,
      headers: { "Content-Range": `0-${part.length - 1}` },
    });
    expect(patch.status).toBe(202);
    await first.stop();

    const second = await start(first.rootDir);
    const tags = (await (await fetch(`${second.url}/v2/a/b/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toEqual(["latest"]);
    const head = await fetch(`${second.url}/v2/a/b/manifests/latest`, { method: "HEAD" });
    expect(head.headers.get("docker-content-digest")).toBe(img.digest);

    const rest = Buffer.from("world");
    const whole = Buffer.concat([part, rest]);
    const status = await fetch(`${second.url}${location}`);
    expect(status.headers.get("range")).toBe(`0-${part.length - 1}`);
    const put = await fetch(`${second.url}${location}?digest=${sha256(whole)}`, {
      method: "PUT",
      body: rest,
      headers: { "Content-Range": `${part.length}-${whole.length - 1}` },
    });
    expect(put.status).toBe(201);
    const got = await fetch(`${second.url}/v2/a/b/blobs/${sha256(whole)}`);
    expect(Buffer.from(await got.arrayBuffer()).toString()).toBe("hello, world");
  });
});
