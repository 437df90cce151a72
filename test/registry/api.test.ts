import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { errorCode, ociIndex, ociManifest, pushBlob, pushImage, sha256 } from "../helpers/push.ts";

let k: RunningKagami;
let url: string;
beforeAll(async () => {
  k = await startKagami();
  url = k.url;
});
afterAll(async () => {
  await k.destroy();
});

const put = (path: string, body: Uint8Array | string, contentType = ociManifest) =>
  fetch(`${url}${path}`, { method: "PUT", body, headers: { "Content-Type": contentType } });

describe("manifests", () => {
  it("refuses a body whose digest differs from the URL's", async () => {
    const img = await pushImage(url, "m/digest", "t");
    const other = `sha256:${"0".repeat(64)}`;
    const res = await put(`/v2/m/digest/manifests/${other}`, img.manifest);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("DIGEST_INVALID");
  });

  it("refuses a manifest whose blobs are not in the repository", async () => {
    const img = await pushImage(url, "m/blobs", "t");
    const res = await put("/v2/m/elsewhere/manifests/t", img.manifest);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("MANIFEST_BLOB_UNKNOWN");
  });

  it("refuses an index whose children are missing, and accepts it once they exist", async () => {
    const img = await pushImage(url, "m/index", "child");
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: ociIndex,
      manifests: [{ mediaType: ociManifest, digest: img.digest, size: img.manifest.length }],
    });
    const missing = await put("/v2/m/index2/manifests/multi", index, ociIndex);
    expect(await errorCode(missing)).toBe("MANIFEST_UNKNOWN");
    const ok = await put("/v2/m/index/manifests/multi", index, ociIndex);
    expect(ok.status).toBe(201);
    const got = await fetch(`${url}/v2/m/index/manifests/multi`);
    expect(got.headers.get("content-type")).toBe(ociIndex);
    expect(await got.text()).toBe(index);
  });

  it("refuses Docker schema 1 with a reason", async () => {
    const res = await put(
      "/v2/m/s1/manifests/t",
      JSON.stringify({ schemaVersion: 1, name: "m/s1", tag: "t", fsLayers: [], history: [] }),
      "application/vnd.docker.distribution.manifest.v1+prettyjws",
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]!.code).toBe("MANIFEST_INVALID");
    expect(body.errors[0]!.message).toMatch(/schema 1/);
  });

  it("refuses manifests over 4 MiB with 413", async () => {
    const res = await put("/v2/m/big/manifests/t", Buffer.alloc(4 * 1024 * 1024 + 10, 32));
    expect(res.status).toBe(413);
    expect(await errorCode(res)).toBe("MANIFEST_INVALID");
  });

  it("stores Docker schema 2 manifests byte for byte", async () => {
    const cfg = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const c = await pushBlob(url, "m/docker", cfg);
    const body = `{\n   "schemaVersion": 2,\n   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": ${cfg.length}, "digest": "${c}"},\n   "layers": []\n}`;
    const res = await put(
      "/v2/m/docker/manifests/v2",
      body,
      "application/vnd.docker.distribution.manifest.v2+json",
    );
    expect(res.status).toBe(201);
    const got = await fetch(`${url}/v2/m/docker/manifests/v2`);
    expect(await got.text()).toBe(body);
    expect(got.headers.get("docker-content-digest")).toBe(sha256(Buffer.from(body)));
  });

  it("deletes a tag without the manifest, and a manifest with its tags", async () => {
    const img = await pushImage(url, "m/del", "a");
    await put(`/v2/m/del/manifests/b`, img.manifest);
    expect((await fetch(`${url}/v2/m/del/manifests/a`, { method: "DELETE" })).status).toBe(202);
    expect((await fetch(`${url}/v2/m/del/manifests/${img.digest}`, { method: "HEAD" })).status).toBe(200);
    expect((await fetch(`${url}/v2/m/del/manifests/a`, { method: "HEAD" })).status).toBe(404);
    expect((await fetch(`${url}/v2/m/del/manifests/${img.digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await fetch(`${url}/v2/m/del/manifests/b`)).status).toBe(404);
    const tags = (await (await fetch(`${url}/v2/m/del/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toEqual([]);
  });

  it("sets OCI-Subject and lists referrers with artifactType filtering", async () => {
    const subject = await pushImage(url, "m/ref", "subject");
    const sbom = await pushImage(url, "m/ref", "sbom", {
      extra: {
        artifactType: "application/spdx+json",
        annotations: { "org.example": "yes" },
        subject: { mediaType: ociManifest, digest: subject.digest, size: subject.manifest.length },
      },
    });
    const sig = await pushImage(url, "m/ref", "sig", {
      extra: { subject: { mediaType: ociManifest, digest: subject.digest, size: subject.manifest.length } },
    });
    const all = await fetch(`${url}/v2/m/ref/referrers/${subject.digest}`);
    expect(all.headers.get("content-type")).toBe(ociIndex);
    const idx = (await all.json()) as {
      manifests: { digest: string; artifactType: string; annotations?: object }[];
    };
    expect(idx.manifests.map((m) => m.digest).sort()).toEqual([sbom.digest, sig.digest].sort());
    const sbomEntry = idx.manifests.find((m) => m.digest === sbom.digest)!;
    expect(sbomEntry.artifactType).toBe("application/spdx+json");
    expect(sbomEntry.annotations).toEqual({ "org.example": "yes" });
    const sigEntry = idx.manifests.find((m) => m.digest === sig.digest)!;
    expect(sigEntry.artifactType).toBe("application/vnd.oci.image.config.v1+json");

    const filtered = await fetch(
      `${url}/v2/m/ref/referrers/${subject.digest}?artifactType=application/spdx%2Bjson`,
    );
    expect(filtered.headers.get("oci-filters-applied")).toBe("artifactType");
    expect(((await filtered.json()) as { manifests: unknown[] }).manifests).toHaveLength(1);

    const none = await fetch(`${url}/v2/m/ref/referrers/sha256:${"1".repeat(64)}`);
    expect(none.status).toBe(200);
    expect(await none.json()).toEqual({ schemaVersion: 2, mediaType: ociIndex, manifests: [] });
  });

  it("answers OCI-Subject on push even when the subject does not exist", async () => {
    const missing = `sha256:${"2".repeat(64)}`;
    const cfg = await pushBlob(url, "m/subj", Buffer.from("{}"));
    const res = await put(
      "/v2/m/subj/manifests/x",
      JSON.stringify({
        schemaVersion: 2,
        mediaType: ociManifest,
        artifactType: "application/x",
        config: { mediaType: "application/vnd.oci.empty.v1+json", digest: cfg, size: 2 },
        layers: [],
        subject: { mediaType: ociManifest, digest: missing, size: 10 },
      }),
    );
    expect(res.status).toBe(201);
    expect(res.headers.get("oci-subject")).toBe(missing);
  });
});

describe("blobs and uploads", () => {
  it("accepts sha512 digests", async () => {
    const data = randomBytes(3000);
    const digest = `sha512:${createHash("sha512").update(data).digest("hex")}`;
    const res = await fetch(`${url}/v2/b/sha512/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: data,
    });
    expect(res.status).toBe(201);
    const got = await fetch(`${url}/v2/b/sha512/blobs/${digest}`);
    expect(Buffer.from(await got.arrayBuffer()).equals(data)).toBe(true);
  });

  it("refuses a wrong digest with DIGEST_INVALID and stores nothing", async () => {
    const wrong = sha256(Buffer.from("something else"));
    const res = await fetch(`${url}/v2/b/wrong/blobs/uploads/?digest=${wrong}`, {
      method: "POST",
      body: "data",
    });
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("DIGEST_INVALID");
    expect((await fetch(`${url}/v2/b/wrong/blobs/${wrong}`, { method: "HEAD" })).status).toBe(404);
  });

  it("answers an out-of-order chunk with 416 and the current Range", async () => {
    const post = await fetch(`${url}/v2/b/chunks/blobs/uploads/`, { method: "POST" });
    const loc = post.headers.get("location")!;
    const first = await fetch(`${url}${loc}`, {
      method: "PATCH",
      body: "abc",
      headers: { "Content-Range": "0-2" },
    });
    expect(first.status).toBe(202);
    expect(first.headers.get("range")).toBe("0-2");
    const skip = await fetch(`${url}${loc}`, {
      method: "PATCH",
      body: "xyz",
      headers: { "Content-Range": "10-12" },
    });
    expect(skip.status).toBe(416);
    expect(skip.headers.get("range")).toBe("0-2");
    const again = await fetch(`${url}${loc}`, {
      method: "PATCH",
      body: "abc",
      headers: { "Content-Range": "0-2" },
    });
    expect(again.status).toBe(416);
    const done = await fetch(`${url}${loc}?digest=${sha256(Buffer.from("abcdef"))}`, {
      method: "PUT",
      body: "def",
      headers: { "Content-Range": "3-5" },
    });
    expect(done.status).toBe(201);
  });

  it("serves byte ranges and refuses unsatisfiable ones", async () => {
    const data = Buffer.from("0123456789");
    const d = await pushBlob(url, "b/range", data);
    const part = await fetch(`${url}/v2/b/range/blobs/${d}`, { headers: { Range: "bytes=2-4" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 2-4/10");
    expect(await part.text()).toBe("234");
    const suffix = await fetch(`${url}/v2/b/range/blobs/${d}`, { headers: { Range: "bytes=-3" } });
    expect(await suffix.text()).toBe("789");
    const bad = await fetch(`${url}/v2/b/range/blobs/${d}`, { headers: { Range: "bytes=20-30" } });
    expect(bad.status).toBe(416);
    expect(bad.headers.get("content-range")).toBe("bytes */10");
  });

  it("mounts from another repository, discovers content without `from`, and falls back to an upload", async () => {
    const d = await pushBlob(url, "b/src", randomBytes(100));
    const withFrom = await fetch(`${url}/v2/b/dst1/blobs/uploads/?mount=${d}&from=b/src`, { method: "POST" });
    expect(withFrom.status).toBe(201);
    expect(withFrom.headers.get("location")).toBe(`/v2/b/dst1/blobs/${d}`);
    const auto = await fetch(`${url}/v2/b/dst2/blobs/uploads/?mount=${d}`, { method: "POST" });
    expect(auto.status).toBe(201);
    const unknown = `sha256:${"3".repeat(64)}`;
    const fallback = await fetch(`${url}/v2/b/dst3/blobs/uploads/?mount=${unknown}&from=b/src`, {
      method: "POST",
    });
    expect(fallback.status).toBe(202);
    expect(fallback.headers.get("docker-upload-uuid")).toBeTruthy();
  });

  it("keeps blobs per repository and deletes links, not shared content", async () => {
    const data = randomBytes(50);
    const d = await pushBlob(url, "b/one", data);
    expect((await fetch(`${url}/v2/b/two/blobs/${d}`, { method: "HEAD" })).status).toBe(404);
    await fetch(`${url}/v2/b/two/blobs/uploads/?mount=${d}&from=b/one`, { method: "POST" });
    // Served once, so the bytes sit in the small-blob cache: the delete must still win over it.
    expect(Buffer.from(await (await fetch(`${url}/v2/b/one/blobs/${d}`)).arrayBuffer())).toEqual(data);
    expect((await fetch(`${url}/v2/b/one/blobs/${d}`, { method: "DELETE" })).status).toBe(202);
    expect((await fetch(`${url}/v2/b/one/blobs/${d}`, { method: "HEAD" })).status).toBe(404);
    expect(await errorCode(await fetch(`${url}/v2/b/one/blobs/${d}`))).toBe("BLOB_UNKNOWN");
    expect((await fetch(`${url}/v2/b/two/blobs/${d}`, { method: "HEAD" })).status).toBe(200);
    expect(Buffer.from(await (await fetch(`${url}/v2/b/two/blobs/${d}`)).arrayBuffer())).toEqual(data);
    const again = await fetch(`${url}/v2/b/one/blobs/${d}`, { method: "DELETE" });
    expect(await errorCode(again)).toBe("BLOB_UNKNOWN");
  });

  it("cancels uploads and reports unknown ones", async () => {
    const post = await fetch(`${url}/v2/b/cancel/blobs/uploads/`, { method: "POST" });
    const loc = post.headers.get("location")!;
    expect((await fetch(`${url}${loc}`, { method: "DELETE" })).status).toBe(204);
    const gone = await fetch(`${url}${loc}`);
    expect(gone.status).toBe(404);
    expect(await errorCode(gone)).toBe("BLOB_UPLOAD_UNKNOWN");
    const other = await fetch(`${url}/v2/b/cancel/blobs/uploads/not-a-uuid`, { method: "PATCH", body: "x" });
    expect(await errorCode(other)).toBe("BLOB_UPLOAD_UNKNOWN");
  });
});

describe("names, listing and errors", () => {
  it("refuses bad names with NAME_INVALID", async () => {
    for (const name of ["UPPER/case", "a//b", "trailing-/x"]) {
      const res = await fetch(`${url}/v2/${name}/tags/list`);
      expect(res.status, name).toBe(400);
      expect(await errorCode(res)).toBe("NAME_INVALID");
    }
  });

  it("answers NAME_UNKNOWN for tags of an unknown repository", async () => {
    const res = await fetch(`${url}/v2/does/not/exist/tags/list`);
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("NAME_UNKNOWN");
  });

  it("answers 405 UNSUPPORTED for a method an endpoint lacks", async () => {
    const res = await fetch(`${url}/v2/x/y/tags/list`, { method: "DELETE" });
    expect(res.status).toBe(405);
    expect(await errorCode(res)).toBe("UNSUPPORTED");
  });

  it("pages tags and the catalog in lexical order with Link headers", async () => {
    const img = await pushImage(url, "page/me", "t0");
    for (const t of ["b", "a", "c", "B"]) await put(`/v2/page/me/manifests/${t}`, img.manifest);
    const p1 = await fetch(`${url}/v2/page/me/tags/list?n=2`);
    expect(((await p1.json()) as { tags: string[] }).tags).toEqual(["B", "a"]);
    expect(p1.headers.get("link")).toBe('</v2/page/me/tags/list?n=2&last=a>; rel="next"');
    const p2 = await fetch(`${url}/v2/page/me/tags/list?n=2&last=a`);
    expect(((await p2.json()) as { tags: string[] }).tags).toEqual(["b", "c"]);
    const p3 = await fetch(`${url}/v2/page/me/tags/list?n=2&last=c`);
    expect(((await p3.json()) as { tags: string[] }).tags).toEqual(["t0"]);
    expect(p3.headers.get("link")).toBeNull();
    const bad = await fetch(`${url}/v2/page/me/tags/list?n=-1`);
    expect(bad.status).toBe(400);

    const cat = await fetch(`${url}/v2/_catalog?n=1`);
    const first = ((await cat.json()) as { repositories: string[] }).repositories;
    expect(first).toHaveLength(1);
    expect(cat.headers.get("link")).toMatch(/^<\/v2\/_catalog\?n=1&last=.+>; rel="next"$/);
    const all = ((await (await fetch(`${url}/v2/_catalog`)).json()) as { repositories: string[] })
      .repositories;
    expect(all).toEqual([...all].sort());
    expect(all).toContain("page/me");
  });

  it("writes one access-log line per request with no credentials", async () => {
    await fetch(`${url}/v2/`, {
      headers: { Authorization: "Basic c2VjcmV0OnNlY3JldA==", "X-Request-Id": "trace-me" },
    });
    await new Promise((r) => setTimeout(r, 200));
    const line = k
      .output()
      .split("\n")
      .find((l) => l.includes('"trace-me"'));
    expect(line).toBeDefined();
    const entry = JSON.parse(line!) as Record<string, unknown>;
    expect(entry).toMatchObject({ method: "GET", path: "/v2/", status: 200, reqId: "trace-me" });
    expect(entry.durationMs).toBeTypeOf("number");
    expect(k.output()).not.toContain("c2VjcmV0OnNlY3JldA");
  });
});
