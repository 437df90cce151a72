/**
 * Pull workflow (spec "Pull": pulling manifests, pulling blobs, checking existence). Mirrors the
 * official 01_pull_test.go, then adds the Pull MUSTs it leaves unchecked.
 */
import { describe, expect, test } from "vitest";
import {
  checkErrorBody,
  expect2xx,
  expect2xxOr,
  expectBody,
  expectDigestHeaderIfPresent,
  expectErrorCode,
  expectLocation,
  expectStatus,
} from "../lib/checks.ts";
import { client } from "../lib/client.ts";
import {
  configs,
  dummyDigest,
  layer,
  MT,
  manifests,
  nonexistentManifest,
  sha256,
  type TestBlob,
  tagName,
} from "../lib/data.ts";
import { env } from "../lib/env.ts";

async function pushBlob(blob: TestBlob): Promise<void> {
  const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
  const put = await client.request("PUT", expectLocation(post), {
    query: { digest: blob.digest },
    headers: { "Content-Type": "application/octet-stream" },
    body: blob.content,
  });
  expect2xx(put);
}

async function pushManifest(ref: string, m: TestBlob): Promise<void> {
  const res = await client.request("PUT", `/v2/<name>/manifests/${ref}`, {
    headers: { "Content-Type": MT.manifest },
    body: m.content,
  });
  expect2xx(res);
}

export function pullWorkflow(): void {
  describe.skipIf(!env.pull)("Pull", () => {
    let tag = "";
    const setupTag = tagName("tagtest0");
    const accept = { Accept: MT.manifest };

    describe("Setup", () => {
      test("Populate registry with test blob (config[0])", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        await pushBlob(configs[0]!);
      });

      test("Populate registry with test blob (config[1])", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        await pushBlob(configs[1]!);
      });

      test("Populate registry with test layer", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        await pushBlob(layer);
      });

      test("Populate registry with test manifest (manifest[0] by tag)", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        tag = setupTag;
        await pushManifest(tag, manifests[0]!);
      });

      test("Populate registry with test manifest (manifest[1] by digest)", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        await pushManifest(manifests[1]!.digest, manifests[1]!);
      });

      test("Get tag name from environment", (ctx) => {
        if (env.runPullSetup) ctx.skip();
        if (env.tagName) tag = env.tagName;
      });
    });

    describe("Pull blobs", () => {
      test("HEAD request to nonexistent blob should result in 404 response", async () => {
        const res = await client.request("HEAD", `/v2/<name>/blobs/${dummyDigest}`);
        expectStatus(res, 404);
      });

      test("HEAD request to existing blob should yield 200", async () => {
        const res = await client.request("HEAD", `/v2/<name>/blobs/${configs[0]!.digest}`);
        expectStatus(res, 200);
        expectDigestHeaderIfPresent(res, configs[0]!.digest);
      });

      test("GET nonexistent blob should result in 404 response", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${dummyDigest}`);
        expectStatus(res, 404);
      });

      test("GET request to existing blob URL should yield 200", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${configs[0]!.digest}`);
        expectStatus(res, 200);
      });
    });

    describe("Pull manifests", () => {
      test("HEAD request to nonexistent manifest should return 404", async () => {
        const res = await client.request("HEAD", `/v2/<name>/manifests/${nonexistentManifest}`);
        expectStatus(res, 404);
      });

      test("HEAD request to manifest[0] path (digest) should yield 200 response", async () => {
        const res = await client.request("HEAD", `/v2/<name>/manifests/${manifests[0]!.digest}`, {
          headers: accept,
        });
        expectStatus(res, 200);
        expectDigestHeaderIfPresent(res, manifests[0]!.digest);
      });

      test("HEAD request to manifest[1] path (digest) should yield 200 response", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        const res = await client.request("HEAD", `/v2/<name>/manifests/${manifests[1]!.digest}`, {
          headers: accept,
        });
        expectStatus(res, 200);
        expectDigestHeaderIfPresent(res, manifests[1]!.digest);
      });

      test("HEAD request to manifest path (tag) should yield 200 response", async () => {
        expect(tag, "no tag (setup failed or OCI_TAG_NAME unset)").not.toBe("");
        const res = await client.request("HEAD", `/v2/<name>/manifests/${tag}`, { headers: accept });
        expectStatus(res, 200);
        expectDigestHeaderIfPresent(res, manifests[0]!.digest);
      });

      test("GET nonexistent manifest should return 404", async () => {
        const res = await client.request("GET", `/v2/<name>/manifests/${nonexistentManifest}`);
        expectStatus(res, 404);
      });

      test("GET request to manifest[0] path (digest) should yield 200 response", async () => {
        const res = await client.request("GET", `/v2/<name>/manifests/${manifests[0]!.digest}`, {
          headers: accept,
        });
        expectStatus(res, 200);
      });

      test("GET request to manifest[1] path (digest) should yield 200 response", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        const res = await client.request("GET", `/v2/<name>/manifests/${manifests[1]!.digest}`, {
          headers: accept,
        });
        expectStatus(res, 200);
      });

      test("GET request to manifest path (tag) should yield 200 response", async () => {
        expect(tag, "no tag (setup failed or OCI_TAG_NAME unset)").not.toBe("");
        const res = await client.request("GET", `/v2/<name>/manifests/${tag}`, { headers: accept });
        expectStatus(res, 200);
      });
    });

    describe("Error codes", () => {
      test("400 response body should contain OCI-conforming JSON message", async () => {
        // The official suite also attaches a junk body to this GET; fetch cannot send one, and it is irrelevant.
        const res = await client.request("GET", "/v2/<name>/manifests/sha256:totallywrong", {
          headers: { "Content-Type": MT.manifest },
        });
        expectStatus(res, 400, 404);
        if (res.status === 400) {
          const body = res.json<{ errors?: { code?: string }[] }>();
          expect(body?.errors?.length, `400 without OCI error JSON: ${res.describe()}`).toBeGreaterThan(0);
          checkErrorBody(res);
        }
      });
    });

    describe("Additional spec MUSTs", () => {
      test("GET /v2/ should yield 200 (API version check)", async () => {
        const res = await client.request("GET", "/v2/");
        expectStatus(res, 200);
      });

      test("GET blob should return exactly the blob content with a matching Docker-Content-Digest", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${configs[0]!.digest}`);
        expectStatus(res, 200);
        expect(sha256(res.body), `blob body does not hash to its digest: ${res.describe()}`).toBe(
          configs[0]!.digest,
        );
        expectDigestHeaderIfPresent(res, configs[0]!.digest);
      });

      test("HEAD blob should report the blob's Content-Length and no body", async () => {
        const blob = configs[0]!;
        const res = await client.request("HEAD", `/v2/<name>/blobs/${blob.digest}`);
        expectStatus(res, 200);
        const len = res.header("content-length");
        if (len !== null && env.runPullSetup) expect(len, res.describe()).toBe(blob.contentLength);
        expect(res.body.length, "HEAD response carried a body").toBe(0);
        expectDigestHeaderIfPresent(res, blob.digest);
      });

      test("GET blob with a Range header should return 206 with the requested bytes or 200 with the whole blob", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        const res = await client.request("GET", `/v2/<name>/blobs/${layer.digest}`, {
          headers: { Range: "bytes=5-14" },
        });
        expectStatus(res, 200, 206);
        if (res.status === 206) {
          expect(res.body.equals(layer.content.subarray(5, 15)), `wrong range bytes: ${res.describe()}`).toBe(
            true,
          );
          expect(res.header("content-range"), res.describe()).toMatch(
            new RegExp(`^bytes 5-14/(${layer.content.length}|\\*)$`),
          );
        } else {
          expectBody(res, layer.content);
        }
      });

      test("GET nonexistent blob should return a BLOB_UNKNOWN error body", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${dummyDigest}`);
        expectStatus(res, 404);
        expectErrorCode(res, "BLOB_UNKNOWN");
      });

      test("GET manifest by digest should return the exact bytes pushed", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        const res = await client.request("GET", `/v2/<name>/manifests/${manifests[1]!.digest}`, {
          headers: accept,
        });
        expectStatus(res, 200);
        expectBody(res, manifests[1]!.content);
        expectDigestHeaderIfPresent(res, manifests[1]!.digest);
      });

      test("GET manifest by tag should return the exact bytes pushed with a matching Docker-Content-Digest", async () => {
        expect(tag, "no tag (setup failed or OCI_TAG_NAME unset)").not.toBe("");
        const res = await client.request("GET", `/v2/<name>/manifests/${tag}`, { headers: accept });
        expectStatus(res, 200);
        expect(sha256(res.body), `manifest body does not hash to the tagged digest: ${res.describe()}`).toBe(
          env.runPullSetup ? manifests[0]!.digest : (env.manifestDigest ?? ""),
        );
        expectDigestHeaderIfPresent(res, sha256(res.body));
      });

      test("GET manifest should return a Content-Type equal to the manifest's mediaType", async () => {
        const res = await client.request("GET", `/v2/<name>/manifests/${manifests[0]!.digest}`, {
          headers: accept,
        });
        expectStatus(res, 200);
        const mediaType = res.json<{ mediaType?: string }>()?.mediaType;
        const ct = (res.header("content-type") ?? "").split(";")[0]?.trim();
        expect(ct, `missing Content-Type: ${res.describe()}`).toBeTruthy();
        if (mediaType) expect(ct, res.describe()).toBe(mediaType);
      });

      test("HEAD manifest should report the manifest's Content-Length and Docker-Content-Digest", async (ctx) => {
        if (!env.runPullSetup) ctx.skip();
        const res = await client.request("HEAD", `/v2/<name>/manifests/${tag}`, { headers: accept });
        expectStatus(res, 200);
        const len = res.header("content-length");
        if (len !== null) expect(len, res.describe()).toBe(manifests[0]!.contentLength);
        expectDigestHeaderIfPresent(res, manifests[0]!.digest);
      });

      test("GET and HEAD manifest by unknown digest should return 404 with MANIFEST_UNKNOWN", async () => {
        const head = await client.request("HEAD", `/v2/<name>/manifests/${dummyDigest}`, { headers: accept });
        expectStatus(head, 404);
        const get = await client.request("GET", `/v2/<name>/manifests/${dummyDigest}`, { headers: accept });
        expectStatus(get, 404);
        expectErrorCode(get, "MANIFEST_UNKNOWN");
      });

      test("GET manifest from a nonexistent repository should return 404", async () => {
        const name = `${env.namespace}/does-not-exist-${sha256(env.namespace).slice(7, 15)}`;
        const res = await client.request("GET", "/v2/<name>/manifests/latest", { name, headers: accept });
        expectStatus(res, 404);
        checkErrorBody(res);
      });
    });

    describe("Teardown", () => {
      const deleteManifest = (i: 0 | 1) => async (ctx: { skip: () => void }) => {
        if (!env.runPullSetup) ctx.skip();
        const res = await client.request("DELETE", `/v2/<name>/manifests/${manifests[i]!.digest}`);
        expect2xxOr(res, 405);
      };
      const deleteBlob = (digest: () => string) => async (ctx: { skip: () => void }) => {
        if (!env.runPullSetup) ctx.skip();
        const res = await client.request("DELETE", `/v2/<name>/blobs/${digest()}`);
        expect2xxOr(res, 404, 405);
      };
      if (env.deleteManifestBeforeBlobs) {
        test("Delete manifest[0] created in setup", deleteManifest(0));
        test("Delete manifest[1] created in setup", deleteManifest(1));
      }
      test(
        "Delete config[0] blob created in setup",
        deleteBlob(() => configs[0]!.digest),
      );
      test(
        "Delete config[1] blob created in setup",
        deleteBlob(() => configs[1]!.digest),
      );
      test(
        "Delete layer blob created in setup",
        deleteBlob(() => layer.digest),
      );
      if (!env.deleteManifestBeforeBlobs) {
        test("Delete manifest[0] created in setup", deleteManifest(0));
        test("Delete manifest[1] created in setup", deleteManifest(1));
      }
    });
  });
}
