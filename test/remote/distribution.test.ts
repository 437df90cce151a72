import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyImage } from "../../src/copy/copy.ts";
import { OciLayout } from "../../src/layout/layout.ts";
import { loadAuthFile, loadZotCredentials } from "../../src/remote/credentials.ts";
import { RemoteRegistry, type RemoteRegistryOptions } from "../../src/remote/remote.ts";
import {
  type BuiltLayout,
  blobPath,
  buildImageLayout,
  LINUX_AMD64,
  LINUX_ARM64,
  verifyLayout,
} from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { writeHtpasswd } from "../helpers/htpasswd.ts";
import { freePort } from "../helpers/net.ts";
import { startTokenIssuer, type TokenIssuer } from "../helpers/token-issuer.ts";
import { hasTool } from "../helpers/tools.ts";
import { type ClientPki, makeClientPki } from "./pki.ts";

const haveTools =
  hasTool("docker-registry") && hasTool("skopeo") && hasTool("openssl") && hasTool("htpasswd");

function sha256(b: Buffer | string): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

/**
 * The digest of what skopeo reads back raw: an independent check that bytes were kept. Async: the
 * token issuer skopeo asks lives in this process.
 */
async function skopeoDigest(ref: string, ...flags: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)("skopeo", ["inspect", "--raw", ...flags, ref], {
    maxBuffer: 8 << 20,
    encoding: "buffer",
  });
  return sha256(stdout);
}

let work: string;
let image: BuiltLayout;
let src: OciLayout;

const fast: Partial<RemoteRegistryOptions> = { retryDelay: 10, maxRetryDelay: 100 };

beforeAll(async () => {
  if (!haveTools) return;
  work = await mkdtemp(join(tmpdir(), "kagami-remote-"));
  image = await buildImageLayout(join(work, "src"), {
    tag: "multi",
    platforms: [LINUX_AMD64, LINUX_ARM64],
    random: true,
  });
  src = await OciLayout.open(join(work, "src"));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe.skipIf(!haveTools)("RemoteRegistry against CNCF distribution", () => {
  describe("anonymous", () => {
    let dist: RunningDistribution;
    let remote: RemoteRegistry;
    beforeAll(async () => {
      dist = await startDistribution();
      remote = new RemoteRegistry({ urls: [dist.url], ...fast });
    });
    afterAll(async () => {
      await remote?.close();
      await dist?.stop();
    });

    it("pushes an index and pulls it back with every digest kept (checked with skopeo)", async () => {
      const pushed = await copyImage(
        { registry: src, repo: "", reference: "multi" },
        { registry: remote, repo: "team/app", tags: ["1.0"] },
      );
      expect(pushed.digest).toBe(image.digest);
      expect(pushed.blobs.copied).toBe(6);
      expect(await skopeoDigest(`docker://${dist.host}/team/app:1.0`, "--tls-verify=false")).toBe(
        image.digest,
      );
      for (const img of image.images) {
        expect(
          await skopeoDigest(`docker://${dist.host}/team/app@${img.manifestDigest}`, "--tls-verify=false"),
        ).toBe(img.manifestDigest);
      }
      const out = await OciLayout.open(join(work, "pulled"), { create: true });
      const pulled = await copyImage(
        { registry: remote, repo: "team/app", reference: "1.0" },
        { registry: out, repo: "", tags: ["1.0"] },
      );
      expect(pulled.digest).toBe(image.digest);
      expect(await verifyLayout(join(work, "pulled"))).toBe(1 + 2 * 4);
      expect(await skopeoDigest(`oci:${join(work, "pulled")}:1.0`)).toBe(image.digest);
      expect(await remote.listTags("team/app")).toEqual(["1.0"]);
      expect(await remote.catalog()).toContain("team/app");
    });

    it("mounts blobs across repositories instead of uploading them again", async () => {
      const again = await copyImage(
        { registry: remote, repo: "team/app", reference: "1.0" },
        { registry: remote, repo: "other/app", tags: ["1.0"] },
      );
      expect(again.blobs.mounted).toBe(6);
      expect(again.bytesCopied).toBe(0);
      expect(await skopeoDigest(`docker://${dist.host}/other/app:1.0`, "--tls-verify=false")).toBe(
        image.digest,
      );
    });

    it("keeps Docker schema 2 manifests as they are (never converted to OCI)", async () => {
      const img = image.images[0]!;
      const docker = Buffer.from(
        `${JSON.stringify(
          {
            schemaVersion: 2,
            mediaType: "application/vnd.docker.distribution.manifest.v2+json",
            config: {
              mediaType: "application/vnd.docker.container.image.v1+json",
              digest: img.configDigest,
              size: img.configSize,
            },
            layers: img.layers.map((l) => ({
              mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
              digest: l.digest,
              size: l.size,
            })),
          },
          null,
          3,
        )}\n`,
      );
      await remote.putManifest(
        "team/app",
        "docker",
        docker,
        "application/vnd.docker.distribution.manifest.v2+json",
      );
      const out = await OciLayout.open(join(work, "docker-layout"), { create: true });
      const r = await copyImage(
        { registry: remote, repo: "team/app", reference: "docker" },
        { registry: out, repo: "", tags: ["d"] },
      );
      expect(r.digest).toBe(sha256(docker));
      expect(r.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
      expect((await readFile(blobPath(join(work, "docker-layout"), r.digest))).equals(docker)).toBe(true);
      const back = await copyImage(
        { registry: out, repo: "", reference: "d" },
        { registry: remote, repo: "team/app2", tags: ["d"] },
      );
      expect(back.digest).toBe(sha256(docker));
      expect(await skopeoDigest(`docker://${dist.host}/team/app2:d`, "--tls-verify=false")).toBe(
        sha256(docker),
      );
    });

    it("keeps referrers through the referrers tag schema on a registry without the API", async () => {
      const empty = Buffer.from("{}");
      const { Readable } = await import("node:stream");
      await remote.putBlob("team/app", sha256(empty), Readable.from([empty]), 2);
      const art = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          artifactType: "application/vnd.example.sig",
          config: { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256(empty), size: 2 },
          layers: [{ mediaType: "application/vnd.oci.empty.v1+json", digest: sha256(empty), size: 2 }],
          subject: { mediaType: image.mediaType, digest: image.digest, size: image.size },
        }),
      );
      const put = await remote.putManifest(
        "team/app",
        sha256(art),
        art,
        "application/vnd.oci.image.manifest.v1+json",
      );
      expect(put.subject).toBe(image.digest);
      const refs = await remote.referrers("team/app", image.digest);
      expect(refs.map((r) => r.digest)).toEqual([sha256(art)]);
      expect(refs[0]!.artifactType).toBe("application/vnd.example.sig");
      const out = await OciLayout.open(join(work, "referrers"), { create: true });
      const r = await copyImage(
        { registry: remote, repo: "team/app", reference: "1.0" },
        { registry: out, repo: "", tags: ["1.0"] },
        { referrers: true },
      );
      expect(r.referrers).toBe(1);
      expect((await out.referrers("", image.digest)).map((d) => d.digest)).toEqual([sha256(art)]);
    });

    it("uploads from a slow source without tripping the wait-for-answer timeout", async () => {
      const { Readable } = await import("node:stream");
      const chunks = Array.from({ length: 25 }, (_, i) => Buffer.alloc(1024, i));
      const data = Buffer.concat(chunks);
      const slow = Readable.from(
        (async function* () {
          for (const c of chunks) {
            await new Promise((r) => setTimeout(r, 100));
            yield c;
          }
        })(),
      );
      const impatient = new RemoteRegistry({ urls: [dist.url], headersTimeout: 300, ...fast });
      try {
        await impatient.putBlob("slow/app", sha256(data), slow, data.length);
        expect(await impatient.blobSize("slow/app", sha256(data))).toBe(data.length);
      } finally {
        await impatient.close();
      }
    });

    it("fails over to the next URL when the first does not answer", async () => {
      const dead = `http://127.0.0.1:${await freePort()}`;
      const failover = new RemoteRegistry({ urls: [dead, dist.url], ...fast, maxRetries: 0 });
      try {
        expect(await failover.headManifest("team/app", "1.0")).toMatchObject({ digest: image.digest });
        expect((await failover.getManifest("team/app", "1.0"))?.digest).toBe(image.digest);
      } finally {
        await failover.close();
      }
      const none = new RemoteRegistry({ urls: [dead], ...fast, maxRetries: 1 });
      try {
        await expect(none.getManifest("team/app", "1.0")).rejects.toThrow(/ECONNREFUSED/);
      } finally {
        await none.close();
      }
    });
  });

  describe("htpasswd (Basic)", () => {
    let dist: RunningDistribution;
    beforeAll(async () => {
      const htpasswd = join(work, "htpasswd");
      writeHtpasswd(htpasswd, [["alice", "wonderland"]]);
      dist = await startDistribution({
        extraYaml: ["auth:", "  htpasswd:", "    realm: kagami-test", `    path: ${htpasswd}`].join("\n"),
      });
    });
    afterAll(async () => {
      await dist?.stop();
    });

    it("copies with credentials, given directly, from a zot credentialsFile or from an auth.json", async () => {
      const direct = new RemoteRegistry({
        urls: [dist.url],
        credentials: { username: "alice", password: "wonderland" },
        ...fast,
      });
      try {
        const r = await copyImage(
          { registry: src, repo: "", reference: "multi" },
          { registry: direct, repo: "basic/app", tags: ["1"] },
        );
        expect(r.digest).toBe(image.digest);
      } finally {
        await direct.close();
      }
      expect(
        await skopeoDigest(
          `docker://${dist.host}/basic/app:1`,
          "--tls-verify=false",
          "--creds",
          "alice:wonderland",
        ),
      ).toBe(image.digest);

      const zot = join(work, "zot-creds.json");
      await writeFile(zot, JSON.stringify({ [dist.host]: { username: "alice", password: "wonderland" } }));
      const viaZot = new RemoteRegistry({
        urls: [dist.url],
        credentials: loadZotCredentials(zot).lookup,
        ...fast,
      });
      const authJson = join(work, "auth.json");
      await writeFile(
        authJson,
        JSON.stringify({
          auths: { [dist.host]: { auth: Buffer.from("alice:wonderland").toString("base64") } },
        }),
      );
      const viaAuthFile = new RemoteRegistry({
        urls: [dist.url],
        credentials: loadAuthFile(authJson).lookup,
        ...fast,
      });
      try {
        expect((await viaZot.getManifest("basic/app", "1"))?.digest).toBe(image.digest);
        expect((await viaAuthFile.getManifest("basic/app", "1"))?.digest).toBe(image.digest);
      } finally {
        await viaZot.close();
        await viaAuthFile.close();
      }
    });

    it("says UNAUTHORIZED, naming the registry, without or with wrong credentials", async () => {
      const anon = new RemoteRegistry({ urls: [dist.url], ...fast });
      const wrong = new RemoteRegistry({
        urls: [dist.url],
        credentials: { username: "alice", password: "nope" },
        ...fast,
      });
      try {
        await expect(anon.getManifest("basic/app", "1")).rejects.toMatchObject({ code: "UNAUTHORIZED" });
        const err = await copyImage(
          { registry: wrong, repo: "basic/app", reference: "1", name: `docker://${dist.host}/basic/app:1` },
          { registry: await OciLayout.open(join(work, "nope"), { create: true }), repo: "", tags: ["x"] },
        ).catch((e: Error) => e);
        expect(String(err)).toMatch(new RegExp(`docker://${dist.host}/basic/app:1.*HTTP 401`));
      } finally {
        await anon.close();
        await wrong.close();
      }
    });
  });

  describe("Bearer token service", () => {
    let dist: RunningDistribution;
    let issuer: TokenIssuer;
    beforeAll(async () => {
      issuer = await startTokenIssuer({ dir: work, users: { bob: "builder" }, expiresIn: 2 });
      dist = await startDistribution({ extraYaml: issuer.yaml });
    });
    afterAll(async () => {
      await dist?.stop();
      await issuer?.stop();
    });

    it("gets a token per scope, caches it until it expires, and renews it", async () => {
      const remote = new RemoteRegistry({
        urls: [dist.url],
        credentials: { username: "bob", password: "builder" },
        ...fast,
      });
      try {
        const r = await copyImage(
          { registry: src, repo: "", reference: "multi" },
          { registry: remote, repo: "tok/app", tags: ["1"] },
        );
        expect(r.digest).toBe(image.digest);
        const pushTokens = issuer.requests.filter((q) => q.status === 200).length;
        // one token for the push scope, reused across 6 blobs and 3 manifests
        expect(pushTokens).toBeLessThanOrEqual(2);
        expect(issuer.requests.every((q) => q.account === "bob")).toBe(true);
        await new Promise((res) => setTimeout(res, 2100));
        expect((await remote.getManifest("tok/app", "1"))?.digest).toBe(image.digest);
        expect(issuer.requests.filter((q) => q.status === 200).length).toBeGreaterThan(pushTokens);
      } finally {
        await remote.close();
      }
      expect(
        await skopeoDigest(`docker://${dist.host}/tok/app:1`, "--tls-verify=false", "--creds", "bob:builder"),
      ).toBe(image.digest);
    });

    it("fails clearly when the token service grants nothing", async () => {
      const anon = new RemoteRegistry({ urls: [dist.url], ...fast });
      const wrong = new RemoteRegistry({
        urls: [dist.url],
        credentials: { username: "bob", password: "x" },
        ...fast,
      });
      try {
        await expect(anon.getManifest("tok/app", "1")).rejects.toMatchObject({ code: "UNAUTHORIZED" });
        await expect(wrong.getManifest("tok/app", "1")).rejects.toThrow(
          /refused a token .* as 'bob': HTTP 401/,
        );
      } finally {
        await anon.close();
        await wrong.close();
      }
    });
  });

  describe("HTTPS with a test CA and a client certificate", () => {
    let dist: RunningDistribution;
    let pki: ClientPki;
    let httpsUrl: string;
    beforeAll(async () => {
      pki = makeClientPki();
      dist = await startDistribution({
        extraYaml: [
          "  tls:",
          `    certificate: ${pki.cert}`,
          `    key: ${pki.key}`,
          "    clientcas:",
          `      - ${pki.caCert}`,
        ].join("\n"),
      });
      httpsUrl = `https://${dist.host}`;
    });
    afterAll(async () => {
      await dist?.stop();
      if (pki) await rm(pki.dir, { recursive: true, force: true });
    });

    it("copies with the CA and client certificate of a certs.d directory", async () => {
      const remote = new RemoteRegistry({ urls: [httpsUrl], certDir: pki.certDir, ...fast });
      try {
        const r = await copyImage(
          { registry: src, repo: "", reference: "multi" },
          { registry: remote, repo: "tls/app", tags: ["1"] },
        );
        expect(r.digest).toBe(image.digest);
        expect((await remote.getManifest("tls/app", "1"))?.digest).toBe(image.digest);
      } finally {
        await remote.close();
      }
      const insecure = new RemoteRegistry({
        urls: [httpsUrl],
        certDir: pki.clientOnlyDir,
        tlsVerify: false,
        ...fast,
      });
      try {
        expect((await insecure.headManifest("tls/app", "1"))?.digest).toBe(image.digest);
      } finally {
        await insecure.close();
      }
    });

    it("fails without the CA, and without a client certificate", async () => {
      const noCa = new RemoteRegistry({
        urls: [httpsUrl],
        certDir: pki.clientOnlyDir,
        ...fast,
        maxRetries: 0,
      });
      const noClient = new RemoteRegistry({
        urls: [httpsUrl],
        certDir: pki.caOnlyDir,
        ...fast,
        maxRetries: 0,
      });
      try {
        await expect(noCa.getManifest("tls/app", "1")).rejects.toThrow(/certificate/i);
        await expect(noClient.getManifest("tls/app", "1")).rejects.toThrow(
          new RegExp(dist.host.replace(/\./g, "\\.")),
        );
      } finally {
        await noCa.close();
        await noClient.close();
      }
    });
  });
});
