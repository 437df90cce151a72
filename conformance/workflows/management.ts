/**
 * Content Management workflow (spec "Deleting tags", "Deleting Manifests", "Deleting Blobs").
 * Mirrors the official 04_management_test.go, then adds the deletion MUSTs it leaves unchecked.
 */
import { describe, expect, test } from "vitest";
import { expect2xx, expect2xxOr, expectErrorCode, expectLocation, expectStatus } from "../lib/checks.ts";
import { client, type RegistryResponse } from "../lib/client.ts";
import {
  configs,
  dummyDigest,
  emptyJSON,
  emptyJSONDescriptor,
  layer,
  MT,
  manifests,
  sha256,
  type TestBlob,
  tagName,
  testBlob,
} from "../lib/data.ts";
import { env, runId } from "../lib/env.ts";

async function pushBlob(blob: TestBlob): Promise<RegistryResponse> {
  const post = await client.request("POST", "/v2/<name>/blobs/uploads/");
  return client.request("PUT", expectLocation(post), {
    query: { digest: blob.digest },
    headers: { "Content-Type": "application/octet-stream" },
    body: blob.content,
  });
}

function putManifest(ref: string, m: TestBlob): Promise<RegistryResponse> {
  return client.request("PUT", `/v2/<name>/manifests/${ref}`, {
    headers: { "Content-Type": MT.manifest },
    body: m.content,
  });
}

function getTags(res: RegistryResponse): string[] {
  return res.json<{ tags?: string[] | null }>()?.tags ?? [];
}

/** A referrer of manifests[3], used to check that deleting a referrer removes it from the referrers list. */
const referrer = testBlob(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MT.manifest,
    artifactType: "application/vnd.kagami.conformance.delete-me",
    config: emptyJSONDescriptor,
    layers: [emptyJSONDescriptor],
    subject: {
      mediaType: MT.manifest,
      digest: sha256(manifests[3]!.content),
      size: manifests[3]!.content.length,
    },
    annotations: { "org.opencontainers.conformance.run": runId },
  }),
);

export function managementWorkflow(): void {
  describe.skipIf(!env.contentManagement)("Content Management", () => {
    const defaultTagName = tagName("tagtest0");
    let tagToDelete = "";
    let numTags = 0;
    let blobDeleteAllowed = true;
    let manifestDeleteStatus = 0;
    let configDeleteStatus = 0;
    const keepTag = tagName("keep");
    const dropTag = tagName("drop");
    let tagDeleteStatus = 0;
    let digestDeleteStatus = 0;

    describe("Setup", () => {
      test("Populate registry with test config blob", async () => {
        expect2xx(await pushBlob(configs[3]!));
      });

      test("Populate registry with test layer", async () => {
        expect2xx(await pushBlob(layer));
      });

      test("Populate registry with test tag", async () => {
        tagToDelete = defaultTagName;
        expect2xx(await putManifest(tagToDelete, manifests[3]!));
      });

      test("Check how many tags there are before anything gets deleted", async () => {
        const res = await client.request("GET", "/v2/<name>/tags/list");
        expectStatus(res, 200);
        const body = res.json<{ tags?: string[] | null }>();
        expect(body, `tag list is not JSON: ${res.describe()}`).toBeTypeOf("object");
        numTags = getTags(res).length;
      });
    });

    describe("Manifest delete", () => {
      test("DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)", async () => {
        const res = await client.request("DELETE", `/v2/<name>/manifests/${tagToDelete}`);
        expectStatus(res, 400, 202, 405);
        if (res.status === 400) {
          const errors = res.json<{ errors?: { code?: string }[] }>()?.errors ?? [];
          expect(errors.length, `400 without OCI error JSON: ${res.describe()}`).toBeGreaterThan(0);
          expect(errors[0]?.code, res.describe()).toBe("UNSUPPORTED");
        }
      });

      test("DELETE request to manifest (digest) should yield 202 response unless already deleted", async () => {
        const res = await client.request("DELETE", `/v2/<name>/manifests/${manifests[3]!.digest}`);
        // In the case that the previous request was accepted, this may or may not fail (which is ok)
        expectStatus(res, 202, 404);
        manifestDeleteStatus = res.status;
      });

      test("GET request to deleted manifest URL should yield 404 response, unless delete is disallowed", async () => {
        const res = await client.request("GET", `/v2/<name>/manifests/${manifests[3]!.digest}`);
        expectStatus(res, 404, 200);
      });

      test("GET request to tags list should reflect manifest deletion", async () => {
        const res = await client.request("GET", "/v2/<name>/tags/list");
        expectStatus(res, 200);
        expect(getTags(res).length, res.describe()).toBeLessThan(numTags);
      });
    });

    describe("Blob delete", () => {
      test("DELETE request to blob URL should yield 202 response", async () => {
        // config blob
        let res = await client.request("DELETE", `/v2/<name>/blobs/${configs[3]!.digest}`);
        expectStatus(res, 202, 404, 405);
        configDeleteStatus = res.status;
        // layer blob
        res = await client.request("DELETE", `/v2/<name>/blobs/${layer.digest}`);
        expectStatus(res, 202, 404, 405);
        if (res.status === 405) blobDeleteAllowed = false;
      });

      test("GET request to deleted blob URL should yield 404 response", async (ctx) => {
        if (!blobDeleteAllowed) ctx.skip();
        const res = await client.request("GET", `/v2/<name>/blobs/${configs[3]!.digest}`);
        expectStatus(res, 404);
      });
    });

    describe("Additional spec MUSTs", () => {
      test("GET request to a manifest deleted by digest should yield 404", async (ctx) => {
        if (manifestDeleteStatus !== 202) ctx.skip();
        const res = await client.request("GET", `/v2/<name>/manifests/${manifests[3]!.digest}`);
        expectStatus(res, 404);
        const tag = await client.request("GET", `/v2/<name>/manifests/${tagToDelete}`);
        expectStatus(tag, 404);
      });

      test("DELETE of a blob that no longer exists should return 404 with BLOB_UNKNOWN", async (ctx) => {
        if (configDeleteStatus !== 202) ctx.skip();
        const res = await client.request("DELETE", `/v2/<name>/blobs/${configs[3]!.digest}`);
        expectStatus(res, 404);
        expectErrorCode(res, "BLOB_UNKNOWN");
      });

      test("Populate registry with a manifest under two tags and a referrer", async () => {
        expect2xx(await pushBlob(configs[3]!));
        expect2xx(await pushBlob(layer));
        expect2xx(await pushBlob(emptyJSON));
        expect2xx(await putManifest(keepTag, manifests[3]!));
        expect2xx(await putManifest(dropTag, manifests[3]!));
        expect2xx(await putManifest(referrer.digest, referrer));
      });

      test("GET request to a deleted tag should yield 404 while other tags of the manifest remain", async (ctx) => {
        const res = await client.request("DELETE", `/v2/<name>/manifests/${dropTag}`);
        tagDeleteStatus = res.status;
        expectStatus(res, 202, 400, 405);
        if (res.status !== 202) ctx.skip();
        const dropped = await client.request("GET", `/v2/<name>/manifests/${dropTag}`, {
          headers: { Accept: MT.manifest },
        });
        expectStatus(dropped, 404);
        expectErrorCode(dropped, "MANIFEST_UNKNOWN");
        const kept = await client.request("GET", `/v2/<name>/manifests/${keepTag}`, {
          headers: { Accept: MT.manifest },
        });
        expectStatus(kept, 200);
        const list = await client.request("GET", "/v2/<name>/tags/list");
        expectStatus(list, 200);
        expect(getTags(list), list.describe()).not.toContain(dropTag);
        expect(getTags(list), list.describe()).toContain(keepTag);
      });

      test("Deleted referrer should disappear from the referrers list", async () => {
        let res = await client.request("GET", `/v2/<name>/referrers/${manifests[3]!.digest}`);
        expectStatus(res, 200);
        const digests = (r: RegistryResponse) =>
          (r.json<{ manifests?: { digest?: string }[] }>()?.manifests ?? []).map((d) => d.digest);
        expect(digests(res), res.describe()).toContain(referrer.digest);
        const del = await client.request("DELETE", `/v2/<name>/manifests/${referrer.digest}`);
        expectStatus(del, 202);
        res = await client.request("GET", `/v2/<name>/referrers/${manifests[3]!.digest}`);
        expectStatus(res, 200);
        expect(digests(res), res.describe()).not.toContain(referrer.digest);
      });

      test("DELETE manifest by digest should make every tag pointing to it yield 404", async (ctx) => {
        const res = await client.request("DELETE", `/v2/<name>/manifests/${manifests[3]!.digest}`);
        digestDeleteStatus = res.status;
        expectStatus(res, 202, 400, 405);
        if (res.status !== 202) ctx.skip();
        for (const ref of [manifests[3]!.digest, keepTag]) {
          const get = await client.request("GET", `/v2/<name>/manifests/${ref}`, {
            headers: { Accept: MT.manifest },
          });
          expectStatus(get, 404);
        }
        const list = await client.request("GET", "/v2/<name>/tags/list");
        expect(getTags(list), list.describe()).not.toContain(keepTag);
      });

      test("DELETE of an unknown manifest digest should return 404", async (ctx) => {
        if (digestDeleteStatus !== 202) ctx.skip();
        const res = await client.request("DELETE", `/v2/<name>/manifests/${dummyDigest}`);
        expectStatus(res, 404);
        expectErrorCode(res, "MANIFEST_UNKNOWN");
      });

      test("DELETE manifest in a nonexistent repository should return 404", async () => {
        const name = `${env.namespace}/no-such-repo-${runId}`;
        const res = await client.request("DELETE", `/v2/<name>/manifests/${dummyDigest}`, { name });
        // deletion disabled (400/405) is only acceptable if the registry also disabled it above
        if (tagDeleteStatus !== 202 && digestDeleteStatus !== 202) expectStatus(res, 404, 400, 405);
        else expectStatus(res, 404);
      });
    });

    describe("Teardown", () => {
      test("Delete content created by additional checks", async () => {
        for (const ref of [referrer.digest, manifests[3]!.digest]) {
          expect2xxOr(await client.request("DELETE", `/v2/<name>/manifests/${ref}`), 404, 405);
        }
        for (const d of [configs[3]!.digest, layer.digest, emptyJSON.digest]) {
          expect2xxOr(await client.request("DELETE", `/v2/<name>/blobs/${d}`), 404, 405);
        }
      });
    });
  });
}
