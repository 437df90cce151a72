import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BlobContent } from "../../src/registry/registry.ts";
import { RemoteRegistry } from "../../src/remote/remote.ts";

/**
 * Blob GETs as Docker Hub, quay.io and S3-backed registries answer them: the registry wants
 * credentials, then redirects to a CDN on another host that takes a signed URL and must never see
 * the registry's credentials. Blob bodies go through the raw HTTP reader; this is its path through
 * auth, redirect, chunked framing and Range resumption.
 */

const blob = randomBytes(3 * 1024 * 1024 + 17);
const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
const auth = `Basic ${Buffer.from("puller:secret").toString("base64")}`;

interface CdnRequest {
  headers: IncomingHttpHeaders;
}

let registry: Server;
let cdn: Server;
let registryUrl = "";
let cdnUrl = "";
const cdnRequests: CdnRequest[] = [];
/** How many CDN answers still break off after this many bytes. */
let cutsLeft = 0;
/** Send the body chunked (no Content-Length), as some CDNs and proxies do. */
let chunked = false;
const cutAt = 1024 * 1024 + 5;

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    ),
  );
}

beforeAll(async () => {
  registry = createServer((req, res) => {
    if (req.headers.authorization !== auth) {
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="test"', "Content-Length": 0 });
      res.end();
      return;
    }
    if (req.url === `/v2/team/app/blobs/${digest}`) {
      res.writeHead(307, { Location: `${cdnUrl}/data/${digest}?signature=abc`, "Content-Length": 0 });
      res.end();
      return;
    }
    res.writeHead(404, { "Content-Length": 0 });
    res.end();
  });
  cdn = createServer((req, res) => {
    cdnRequests.push({ headers: req.headers });
    if (!req.url?.startsWith(`/data/${digest}?signature=abc`)) {
      res.writeHead(403);
      res.end();
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const from = range ? Number(range[1]) : 0;
    // The body goes out in pieces of odd sizes.
    res.writeHead(range ? 206 : 200, {
      "Content-Type": "application/octet-stream",
      ...(chunked ? {} : { "Content-Length": blob.length - from }),
      ...(range ? { "Content-Range": `bytes ${from}-${blob.length - 1}/${blob.length}` } : {}),
    });
    const cut = cutsLeft > 0;
    if (cut) cutsLeft--;
    let at = from;
    const step = () => {
      if (cut && at >= cutAt) {
        res.socket?.destroy();
        return;
      }
      if (at >= blob.length) {
        res.end();
        return;
      }
      const n = Math.min(blob.length - at, 99_991, cut ? cutAt - at : Number.POSITIVE_INFINITY);
      const more = res.write(blob.subarray(at, at + n));
      at += n;
      if (more) setImmediate(step);
      else res.once("drain", step);
    };
    step();
  });
  registryUrl = await listen(registry);
  cdnUrl = await listen(cdn);
});

afterAll(async () => {
  await new Promise((r) => registry.close(r));
  await new Promise((r) => cdn.close(r));
});

function remote(): RemoteRegistry {
  return new RemoteRegistry({
    urls: [registryUrl],
    credentials: { username: "puller", password: "secret" },
    retryDelay: 10,
  });
}

async function viaPump(content: BlobContent): Promise<Buffer> {
  const parts: Buffer[] = [];
  await content.pump!((view) => {
    parts.push(Buffer.from(view));
    return true;
  }).done;
  return Buffer.concat(parts);
}

async function viaStream(content: BlobContent): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of content.stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe("blob GET redirected to a CDN", () => {
  it("follows the redirect with the registry's credentials left behind, through pump and stream", async () => {
    const r = remote();
    try {
      for (const [read, framing] of [
        [viaPump, "length"],
        [viaStream, "length"],
        [viaPump, "chunked"],
        [viaStream, "chunked"],
      ] as const) {
        cdnRequests.length = 0;
        chunked = framing === "chunked";
        const content = await r.getBlob("team/app", digest);
        expect(content?.size).toBe(chunked ? -1 : blob.length);
        const got = await read(content!);
        expect(got.length).toBe(blob.length);
        expect(createHash("sha256").update(got).digest("hex")).toBe(digest.slice("sha256:".length));
        expect(cdnRequests).toHaveLength(1);
        expect(cdnRequests[0]!.headers.authorization).toBeUndefined();
      }
    } finally {
      chunked = false;
      await r.close();
    }
  });

  it("resumes a body cut off by the CDN with a Range request through the registry again", async () => {
    const r = remote();
    try {
      cdnRequests.length = 0;
      cutsLeft = 2;
      const content = await r.getBlob("team/app", digest);
      expect(content?.size).toBe(blob.length);
      const got = await viaPump(content!);
      expect(got.equals(blob)).toBe(true);
      expect(cdnRequests.map((c) => c.headers.range)).toEqual([
        undefined,
        `bytes=${cutAt}-`,
        `bytes=${cutAt}-`,
      ]);
      for (const c of cdnRequests) expect(c.headers.authorization).toBeUndefined();
    } finally {
      cutsLeft = 0;
      await r.close();
    }
  });
});
