/**
 * Push workflow (spec "Push": monolithic, single-POST and chunked blob uploads, cross-repository
 * mounts, manifest uploads). Mirrors the official 02_push_test.go, then adds the Push MUSTs it
 * leaves unchecked.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { describe, expect, test } from "vitest";
import {
  checkErrorBody,
  expect2xxOr,
  expectBody,
  expectDigestHeaderIfPresent,
  expectErrorCode,
  expectLocation,
  expectStatus,
} from "../lib/checks.ts";
import { client, type RegistryResponse } from "../lib/client.ts";
import {
  type ChunkedBlob,
  chunkedBlob,
  configs,
  dummyDigest,
  emptyLayerManifest,
  layer,
  MT,
  manifests,
  nonexistentManifest,
  sha256,
  tagName,
  testBlob,
  testBlobA,
} from "../lib/data.ts";
import { env } from "../lib/env.ts";

const octet = { "Content-Type": "application/octet-stream" };

function relative(loc: string | undefined): string {
  if (!loc) return "";
  const u = new URL(loc);
  return u.pathname + u.search;
}

export function pushWorkflow(): void {
  describe.skipIf(!env.push)("Push", () => {
    let lastResponse: RegistryResponse | undefined;
    let prevResponse: RegistryResponse | undefined;
    let emptyLayerManifestRef = "";
    let chunked: ChunkedBlob = chunkedBlob(42);
    let streamedPut: RegistryResponse | undefined;
    let secondChunkResponse: RegistryResponse | undefined;
    let mountResponse: RegistryResponse | undefined;
    const extraBlobs: { name?: string; digest: string }[] = [];
    const crossmount = env.crossmountNamespace;

    describe("Setup", () => {
      // No setup required at this time for push tests (as in the official suite).
    });

    describe("Blob Upload Streamed", () => {
      test("PATCH request with blob in body should yield 202 response", async () => {
        const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
        const loc = expectLocation(post);
        const res = await client.request("PATCH", loc, { headers: octet, body: testBlobA.content });
        expectStatus(res, 202);
        lastResponse = res;
      });

      test("PUT request to session URL with digest should yield 201 response", async () => {
        expect(lastResponse, "previous step failed").toBeDefined();
        const res = await client.request("PUT", expectLocation(lastResponse!), {
          query: { digest: testBlobA.digest },
          headers: octet,
        });
        expectStatus(res, 201);
        expectLocation(res);
        streamedPut = res;
      });
    });

    describe("Blob Upload Monolithic", () => {
      test("GET nonexistent blob should result in 404 response", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${dummyDigest}`);
        expectStatus(res, 404);
      });

      test("POST request with digest and blob should yield a 201 or 202", async () => {
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          query: { digest: configs[1]!.digest },
          headers: octet,
          body: configs[1]!.content,
        });
        expectLocation(res);
        expectStatus(res, 201, 202);
        lastResponse = res;
      });

      test("GET request to blob URL from prior request should yield 200 or 404 based on response code", async () => {
        expect(lastResponse, "previous step failed").toBeDefined();
        const res = await client.request("GET", `/v2/<name>/blobs/${configs[1]!.digest}`);
        if (lastResponse!.status === 202) expectStatus(res, 404);
        else expectStatus(res, 200);
      });

      test("POST request should yield a session ID", async () => {
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/");
        expectStatus(res, 202);
        lastResponse = res;
      });

      test("PUT upload of a blob should yield a 201 Response", async () => {
        expect(lastResponse, "previous step failed").toBeDefined();
        const res = await client.request("PUT", expectLocation(lastResponse!), {
          query: { digest: configs[1]!.digest },
          headers: octet,
          body: configs[1]!.content,
        });
        expectLocation(res);
        expectStatus(res, 201);
      });

      test("GET request to existing blob should yield 200 response", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${configs[1]!.digest}`);
        expectStatus(res, 200);
      });

      test("PUT upload of a layer blob should yield a 201 Response", async () => {
        const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
        const res = await client.request("PUT", expectLocation(post), {
          query: { digest: layer.digest },
          headers: octet,
          body: layer.content,
        });
        expectLocation(res);
        expectStatus(res, 201);
      });

      test("GET request to existing layer should yield 200 response", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${layer.digest}`);
        expectStatus(res, 200);
      });
    });

    describe("Blob Upload Chunked", () => {
      test("Out-of-order blob upload should return 416", async () => {
        const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
        const loc = expectLocation(post);
        // rebuild the chunked blob if the registry's minimum chunk size is above our chunk size
        const minSize = post.header("oci-chunk-min-length");
        if (minSize) {
          const n = Number.parseInt(minSize, 10);
          expect(Number.isNaN(n), `bad OCI-Chunk-Min-Length: ${minSize}`).toBe(false);
          if (n > chunked.chunk1.length) chunked = chunkedBlob(n * 2 - 2);
        }
        const res = await client.request("PATCH", loc, {
          headers: { ...octet, "Content-Range": chunked.chunk2Range },
          body: chunked.chunk2,
        });
        expectStatus(res, 416);
      });

      test("PATCH request with first chunk should return 202", async () => {
        const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
        const loc = expectLocation(post);
        prevResponse = post;
        const res = await client.request("PATCH", loc, {
          headers: { ...octet, "Content-Range": chunked.chunk1Range },
          body: chunked.chunk1,
        });
        expectStatus(res, 202);
        expect(res.header("range"), res.describe()).toBe(chunked.chunk1Range);
        lastResponse = res;
      });

      test("Retry previous blob chunk should return 416", async () => {
        expect(prevResponse, "previous step failed").toBeDefined();
        const res = await client.request("PATCH", expectLocation(prevResponse!), {
          headers: { ...octet, "Content-Range": chunked.chunk1Range },
          body: chunked.chunk1,
        });
        expectStatus(res, 416);
      });

      test("Get on stale blob upload should return 204 with a range and location", async () => {
        expect(prevResponse, "previous step failed").toBeDefined();
        const res = await client.request("GET", expectLocation(prevResponse!));
        expectStatus(res, 204);
        expectLocation(res);
        expect(res.header("range"), res.describe()).toBe(chunked.chunk1Range);
        lastResponse = res;
      });

      test("PATCH request with second chunk should return 202", async () => {
        expect(lastResponse, "previous step failed").toBeDefined();
        const res = await client.request("PATCH", expectLocation(lastResponse!), {
          headers: { ...octet, "Content-Range": chunked.chunk2Range },
          body: chunked.chunk2,
        });
        const loc = res.location();
        expectStatus(res, 202);
        expect(loc, `missing Location: ${res.describe()}`).toBeTruthy();
        lastResponse = res;
        secondChunkResponse = res;
      });

      test("PUT request with digest should return 201", async () => {
        expect(lastResponse, "previous step failed").toBeDefined();
        const res = await client.request("PUT", expectLocation(lastResponse!), {
          query: { digest: chunked.blob.digest },
          headers: octet,
        });
        expectStatus(res, 201);
        expectLocation(res);
      });
    });

    describe("Cross-Repository Blob Mount", () => {
      test("Cross-mounting of a blob without the from argument should yield session id", async () => {
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          name: crossmount,
          query: { mount: dummyDigest },
        });
        expectStatus(res, 202);
        expectLocation(res);
      });

      test("POST request to mount another repository's blob should return 201 or 202", async () => {
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          name: crossmount,
          query: { mount: testBlobA.digest, from: env.namespace },
        });
        expectStatus(res, 201, 202);
        lastResponse = res;
        mountResponse = res;
        extraBlobs.push({ name: crossmount, digest: testBlobA.digest });
      });

      test("GET request to test digest within cross-mount namespace should return 200", async (ctx) => {
        if (lastResponse?.status !== 201) ctx.skip();
        expect(relative(lastResponse!.location())).toBe(`/v2/${crossmount}/blobs/${testBlobA.digest}`);
        const res = await client.request("GET", expectLocation(lastResponse!));
        expectStatus(res, 200);
      });

      test("Cross-mounting of nonexistent blob should yield session id", async (ctx) => {
        if (lastResponse?.status !== 202) ctx.skip();
        expect(relative(lastResponse!.location())).toMatch(new RegExp(`^/v2/${crossmount}/blobs/uploads/`));
      });

      test("Cross-mounting without from, and automatic content discovery enabled should return a 201", async (ctx) => {
        if (
          !env.runAutomaticCrossmountTest ||
          lastResponse?.status !== 201 ||
          !env.automaticCrossmountEnabled
        ) {
          ctx.skip();
        }
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          name: crossmount,
          query: { mount: testBlobA.digest },
        });
        expectStatus(res, 201);
      });

      test("Cross-mounting without from, and automatic content discovery disabled should return a 202", async (ctx) => {
        if (
          !env.runAutomaticCrossmountTest ||
          lastResponse?.status !== 201 ||
          env.automaticCrossmountEnabled
        ) {
          ctx.skip();
        }
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          name: crossmount,
          query: { mount: testBlobA.digest },
        });
        expectStatus(res, 202);
      });
    });

    describe("Manifest Upload", () => {
      test("GET nonexistent manifest should return 404", async () => {
        const res = await client.request("GET", `/v2/<name>/manifests/${nonexistentManifest}`);
        expectStatus(res, 404);
      });

      test("PUT should accept a manifest upload", async () => {
        for (let i = 0; i < 4; i++) {
          const res = await client.request("PUT", `/v2/<name>/manifests/${tagName(`test${i}`)}`, {
            headers: { "Content-Type": MT.manifest },
            body: manifests[1]!.content,
          });
          expectLocation(res);
          expectStatus(res, 201);
        }
      });

      test("Registry should accept a manifest upload with no layers", async () => {
        const res = await client.request("PUT", `/v2/<name>/manifests/${tagName("emptylayer")}`, {
          headers: { "Content-Type": MT.manifest },
          body: emptyLayerManifest.content,
        });
        if (res.status === 201) {
          emptyLayerManifestRef = expectLocation(res);
        } else {
          // The official suite only warns here.
          console.warn(`WARNING: image manifest with no layers is not supported: ${res.describe()}`);
        }
      });

      test("GET request to manifest URL (digest) should yield 200 response", async () => {
        const res = await client.request("GET", `/v2/<name>/manifests/${manifests[1]!.digest}`, {
          headers: { Accept: MT.manifest },
        });
        expectStatus(res, 200);
      });
    });

    describe("Additional spec MUSTs", () => {
      test("POST upload session should return 202 with a Location usable for an upload status GET (204)", async () => {
        const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
        expectStatus(post, 202);
        const raw = post.header("location") ?? "";
        expect(raw, `missing Location: ${post.describe()}`).not.toBe("");
        // relative or absolute are both allowed; either must resolve against the request URL
        const loc = expectLocation(post);
        expect(new URL(loc).protocol).toMatch(/^https?:$/);
        const status = await client.request("GET", loc);
        expectStatus(status, 204);
        expectLocation(status);
        // each session is a unique upload session
        const other = await client.request("POST", "/v2/<name>/blobs/uploads/");
        expectStatus(other, 202);
        expect(expectLocation(other), "two upload sessions share one Location").not.toBe(loc);
      });

      test("Blob upload PUT Location should be a pullable URL for the blob", async () => {
        expect(streamedPut, "streamed upload failed").toBeDefined();
        const res = await client.request("GET", expectLocation(streamedPut!));
        expectStatus(res, 200);
        expectBody(res, testBlobA.content);
        expectDigestHeaderIfPresent(streamedPut!, testBlobA.digest);
      });

      test("Streamed (PATCH without Content-Range) upload should store the exact bytes", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${testBlobA.digest}`);
        expectStatus(res, 200);
        expectBody(res, testBlobA.content);
      });

      test("Single POST monolithic upload should store the exact bytes when it answers 201", async () => {
        const blob = testBlob(randomBytes(33));
        extraBlobs.push({ digest: blob.digest });
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          query: { digest: blob.digest },
          headers: octet,
          body: blob.content,
        });
        expectStatus(res, 201, 202);
        const loc = expectLocation(res);
        if (res.status === 201) {
          const get = await client.request("GET", loc);
          expectStatus(get, 200);
          expectBody(get, blob.content);
        }
      });

      test("Chunked PATCH response Range should cover every byte received so far", () => {
        expect(secondChunkResponse, "second chunk step failed").toBeDefined();
        expect(secondChunkResponse!.header("range"), secondChunkResponse!.describe()).toBe(
          `0-${chunked.blob.content.length - 1}`,
        );
      });

      test("Chunked upload should store the exact bytes of all chunks in order", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/${chunked.blob.digest}`);
        expectStatus(res, 200);
        expectBody(res, chunked.blob.content);
      });

      test("Chunked upload with the final chunk in the closing PUT should yield 201", async () => {
        const c = chunkedBlob(50);
        extraBlobs.push({ digest: c.blob.digest });
        const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
        const patch = await client.request("PATCH", expectLocation(post), {
          headers: { ...octet, "Content-Range": c.chunk1Range },
          body: c.chunk1,
        });
        expectStatus(patch, 202);
        const put = await client.request("PUT", expectLocation(patch), {
          query: { digest: c.blob.digest },
          headers: { ...octet, "Content-Range": c.chunk2Range },
          body: c.chunk2,
        });
        expectStatus(put, 201);
        expectLocation(put);
        const get = await client.request("GET", `/v2/<name>/blobs/${c.blob.digest}`);
        expectStatus(get, 200);
        expectBody(get, c.blob.content);
      });

      test("Blob upload with a digest that does not match the content should fail with 400 DIGEST_INVALID", async () => {
        const content = randomBytes(20);
        const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
        const put = await client.request("PUT", expectLocation(post), {
          query: { digest: sha256(Buffer.concat([content, Buffer.from("x")])) },
          headers: octet,
          body: content,
        });
        expectStatus(put, 400);
        expectErrorCode(put, "DIGEST_INVALID");
      });

      test("Upload status of an unknown session should return 404 with a blob upload error code", async () => {
        const res = await client.request("GET", `/v2/<name>/blobs/uploads/${randomUUID()}`);
        expectStatus(res, 404);
        expectErrorCode(res, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID");
      });

      test("Mounted blob should be readable with identical content in the target repository", async (ctx) => {
        if (mountResponse?.status !== 201) ctx.skip();
        expectLocation(mountResponse!);
        expectDigestHeaderIfPresent(mountResponse!, testBlobA.digest);
        const res = await client.request("GET", `/v2/<name>/blobs/${testBlobA.digest}`, { name: crossmount });
        expectStatus(res, 200);
        expectBody(res, testBlobA.content);
      });

      test("Cross-mounting a blob the source repository lacks should fall back to an upload session (202)", async () => {
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          name: crossmount,
          query: { mount: dummyDigest, from: env.namespace },
        });
        expectStatus(res, 202);
        expect(relative(res.location())).toMatch(new RegExp(`^/v2/${crossmount}/blobs/uploads/.`));
      });

      test("Automatic cross-mount without from should mount a blob that only another repository has", async (ctx) => {
        if (!env.runAutomaticCrossmountTest || !env.automaticCrossmountEnabled) ctx.skip();
        // configs[1] was pushed to OCI_NAMESPACE above and never to the cross-mount namespace.
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          name: crossmount,
          query: { mount: configs[1]!.digest },
        });
        expectStatus(res, 201);
        extraBlobs.push({ name: crossmount, digest: configs[1]!.digest });
        const get = await client.request("GET", expectLocation(res));
        expectStatus(get, 200);
        expectBody(get, configs[1]!.content);
      });

      test("Manifest PUT should return Docker-Content-Digest equal to the manifest digest and a pullable Location", async () => {
        const res = await client.request("PUT", `/v2/<name>/manifests/${tagName("test0")}`, {
          headers: { "Content-Type": MT.manifest },
          body: manifests[1]!.content,
        });
        expectStatus(res, 201);
        expectDigestHeaderIfPresent(res, manifests[1]!.digest);
        const get = await client.request("GET", expectLocation(res), { headers: { Accept: MT.manifest } });
        expectStatus(get, 200);
        expectBody(get, manifests[1]!.content);
      });

      test("Manifest PUT by digest reference should yield 201 and store the exact bytes", async () => {
        const res = await client.request("PUT", `/v2/<name>/manifests/${emptyLayerManifest.digest}`, {
          headers: { "Content-Type": MT.manifest },
          body: emptyLayerManifest.content,
        });
        expectStatus(res, 201);
        expectDigestHeaderIfPresent(res, emptyLayerManifest.digest);
        emptyLayerManifestRef ||= expectLocation(res);
        const get = await client.request("GET", `/v2/<name>/manifests/${emptyLayerManifest.digest}`, {
          headers: { Accept: MT.manifest },
        });
        expectStatus(get, 200);
        expectBody(get, emptyLayerManifest.content);
      });

      test("Manifest referencing an unknown blob should be accepted or rejected with MANIFEST_BLOB_UNKNOWN", async () => {
        const unknown = sha256(randomBytes(16));
        const body = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: MT.manifest,
            config: { mediaType: MT.config, digest: configs[1]!.digest, size: configs[1]!.content.length },
            layers: [{ mediaType: MT.layer, digest: unknown, size: 1234 }],
          }),
        );
        const res = await client.request("PUT", `/v2/<name>/manifests/${tagName("unknownblob")}`, {
          headers: { "Content-Type": MT.manifest },
          body,
        });
        if (res.status === 201) {
          await client.request("DELETE", `/v2/<name>/manifests/${sha256(body)}`);
          return;
        }
        expect(res.status >= 400 && res.status < 500, `expected 201 or 4xx: ${res.describe()}`).toBe(true);
        expectErrorCode(res, "MANIFEST_BLOB_UNKNOWN");
      });

      test("Manifest PUT with a 128-character tag using every allowed character class should be accepted", async () => {
        const tag = `_Ab.9-${tagName("max")}`.padEnd(128, "x");
        const res = await client.request("PUT", `/v2/<name>/manifests/${tag}`, {
          headers: { "Content-Type": MT.manifest },
          body: manifests[1]!.content,
        });
        expectStatus(res, 201);
        const get = await client.request("GET", `/v2/<name>/manifests/${tag}`, {
          headers: { Accept: MT.manifest },
        });
        expectStatus(get, 200);
        expectBody(get, manifests[1]!.content);
      });

      test("Manifest PUT with an invalid tag should be rejected", async () => {
        for (const bad of ["-leading-dash", "a".repeat(129)]) {
          const res = await client.request("PUT", `/v2/<name>/manifests/${bad}`, {
            headers: { "Content-Type": MT.manifest },
            body: manifests[1]!.content,
          });
          expect(res.status >= 400 && res.status < 500, `expected 4xx: ${res.describe()}`).toBe(true);
          checkErrorBody(res);
        }
      });

      test("Upload to an invalid repository name should be rejected with NAME_INVALID", async () => {
        const res = await client.request("POST", "/v2/<name>/blobs/uploads/", {
          name: `${env.namespace}/Invalid_NAME`,
        });
        expect(res.status >= 400 && res.status < 500, `expected 4xx: ${res.describe()}`).toBe(true);
        expectErrorCode(res, "NAME_INVALID");
      });
    });

    describe("Teardown", () => {
      const deleteManifests = async () => {
        let res = await client.request("DELETE", `/v2/<name>/manifests/${manifests[1]!.digest}`);
        expect2xxOr(res, 405);
        if (emptyLayerManifestRef) {
          res = await client.request("DELETE", `/v2/<name>/manifests/${emptyLayerManifest.digest}`);
          expect2xxOr(res, 405);
        }
      };
      if (env.deleteManifestBeforeBlobs) test("Delete manifest created in tests", deleteManifests);

      test("Delete config blob created in tests", async () => {
        const res = await client.request("DELETE", `/v2/<name>/blobs/${configs[1]!.digest}`);
        expect2xxOr(res, 404, 405);
      });

      test("Delete layer blob created in setup", async () => {
        const res = await client.request("DELETE", `/v2/<name>/blobs/${layer.digest}`);
        expect2xxOr(res, 404, 405);
      });

      if (!env.deleteManifestBeforeBlobs) test("Delete manifest created in tests", deleteManifests);

      test("Delete additional blobs created in tests", async () => {
        const all: { name?: string; digest: string }[] = [
          { digest: testBlobA.digest },
          { digest: chunked.blob.digest },
          ...extraBlobs,
        ];
        for (const b of all) {
          const res = await client.request("DELETE", `/v2/<name>/blobs/${b.digest}`, { name: b.name });
          expect2xxOr(res, 404, 405);
        }
      });
    });
  });
}
