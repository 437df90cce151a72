/**
 * `kagami validate` against real peers on loopback: a Kagami configured as
 * examples/k8s-public-mirror.json asks (anonymous pull, a read-only and a read-write account, TLS,
 * on-demand sync, here from a distribution standing in for registry.k8s.io; release files under
 * /dl through the example's extensions.artifacts, pulled through from nginx standing in for dl.k8s.io), nginx fronts that redirect blobs to an archeio-style blob copy or
 * serve one corrupted blob, and a Kagami that refuses anonymous pulls.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BuiltLayout, buildImageLayout, LINUX_AMD64, LINUX_ARM64 } from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, repoRoot, startKagami } from "../helpers/kagami.ts";
import { type RunningNginx, startNginx } from "../helpers/nginx.ts";
import { makeTestPki, type TestPki } from "../helpers/tls.ts";
import { hasTool } from "../helpers/tools.ts";
import { blobCopy, pushLayout, releaseFiles, validateJson } from "./common.ts";

const example = JSON.parse(await readFile(join(repoRoot, "examples/k8s-public-mirror.json"), "utf8")) as {
  http: Record<string, unknown> & {
    accessControl: { repositories: Record<string, Record<string, unknown>> };
  };
  extensions: { sync: { registries: Record<string, unknown>[] }; artifacts: Record<string, unknown> };
};

describe.runIf(hasTool("nginx") && hasTool("htpasswd") && hasTool("openssl") && hasTool("docker-registry"))(
  "kagami validate",
  () => {
    let work: string;
    let pki: TestPki;
    let upstream: RunningDistribution;
    let k: RunningKagami;
    let closed: RunningKagami;
    let files: RunningNginx;
    let blobs: RunningNginx;
    let redirector: RunningNginx;
    let corrupter: RunningNginx;
    let multi: BuiltLayout;
    let single: BuiltLayout;
    let release: Awaited<ReturnType<typeof releaseFiles>>;

    /** The example's http section: its accounts file and TLS files replaced by the test's. */
    function exampleHttp(htpasswd: string, anonymous: boolean): Record<string, unknown> {
      const { tls: _tls, ...http } = example.http;
      const repositories = Object.fromEntries(
        Object.entries(example.http.accessControl.repositories).map(([p, policy]) => [
          p,
          anonymous ? policy : { ...policy, anonymousPolicy: [] },
        ]),
      );
      return {
        ...http,
        auth: { ...(http.auth as object), htpasswd: { path: htpasswd }, failDelay: 0 },
        accessControl: { repositories },
      };
    }

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), "kagami-validate-"));
      pki = makeTestPki();
      const htpasswd = join(work, "htpasswd");
      writeHtpasswd(htpasswd, [
        ["reader", "r-pass"],
        ["pusher", "p-pass"],
      ]);
      multi = await buildImageLayout(join(work, "multi"), {
        tag: "3.10",
        platforms: [LINUX_AMD64, LINUX_ARM64],
      });
      single = await buildImageLayout(join(work, "single"), { tag: "v1", layerSizes: [256 * 1024] });
      // registry.k8s.io's stand-in: the example mirrors it on demand, so the images come from here.
      upstream = await startDistribution();
      closed = await startKagami({ config: { http: exampleHttp(htpasswd, false) } });
      for (const target of [upstream.host, closed.host]) {
        await pushLayout(multi.ref, `${target}/pause:3.10`, "pusher:p-pass");
        await pushLayout(single.ref, `${target}/k8s/app:v1`, "pusher:p-pass");
      }
      await mkdir(join(work, "files"));
      release = await releaseFiles(join(work, "files"));
      files = await startNginx({
        root: join(work, "files"),
        // dl.k8s.io answers with a redirect to its CDN; so does this host under /dl/.
        locations: "    location ~ ^/dl/(.*)$ { return 302 http://$http_host/$1; }",
      });
      const registries = example.extensions.sync.registries.map((r) => ({ ...r, urls: [upstream.url] }));
      k = await startKagami({
        config: {
          http: exampleHttp(htpasswd, true),
          extensions: {
            sync: { ...example.extensions.sync, registries },
            artifacts: {
              ...example.extensions.artifacts,
              rootDirectory: join(work, "artifacts"),
              upstream: { url: `${files.url}/dl`, verifyChecksums: true },
            },
          },
        },
        tls: { cert: pki.cert, key: pki.key },
      });
      await blobCopy(multi.dir, join(work, "blobcopy"));
      await blobCopy(single.dir, join(work, "blobcopy"));
      blobs = await startNginx({ root: join(work, "blobcopy") });
      redirector = await startNginx({
        root: work,
        proxyTo: `https://${k.host}`,
        locations: `    location ~ ^/v2/.+/blobs/(sha256:[0-9a-f]+)$ { return 307 ${blobs.url}/containers/images/$1; }`,
      });
      const layer = single.images[0]!.layers[0]!;
      const original = await readFile(join(single.dir, "blobs/sha256", layer.digest.slice(7)));
      const damaged = Buffer.from(original);
      damaged[damaged.length >> 1] = damaged[damaged.length >> 1]! ^ 0xff;
      await writeFile(join(work, "damaged.bin"), damaged);
      corrupter = await startNginx({
        root: work,
        proxyTo: `https://${k.host}`,
        locations: [
          `    location = /v2/k8s/app/blobs/${layer.digest} { alias ${join(work, "damaged.bin")}; }`,
          // A tag HEAD does not find, though GET serves it: containerd would not pull it.
          "    location = /v2/pause/manifests/3.10 {",
          "      if ($request_method = HEAD) { return 404; }",
          `      proxy_pass https://${k.host}; proxy_set_header Host $http_host;`,
          "    }",
        ].join("\n"),
      });
    });

    afterAll(async () => {
      for (const s of [corrupter, redirector, blobs, files]) await s?.stop();
      await k?.destroy();
      await closed?.destroy();
      await upstream?.stop();
      if (work) await rm(work, { recursive: true, force: true });
    });

    const tls = () => ["--certificate-authority", pki.caCert];

    it("passes against the public-mirror configuration: images, files, anonymous, read-only and read-write", async () => {
      const { code, report } = await validateJson(
        "--registry",
        k.url,
        "--image",
        "pause:3.10",
        "--image",
        `${k.host}/k8s/app:v1`,
        "--artifacts",
        `${k.url}/dl`,
        "--file",
        release.files.kubectl!,
        "--file",
        release.files.kubeadm!,
        "--ro-creds",
        "reader:r-pass",
        "--rw-creds",
        "pusher:p-pass",
        ...tls(),
      );
      expect(report.summary).toMatchObject({ failed: 0 });
      expect(code).toBe(0);
      expect(report.ok).toBe(true);
      const [pause, app] = report.images;
      expect(pause).toMatchObject({
        status: "pass",
        digest: multi.digest,
        platforms: ["linux/amd64", "linux/arm64/v8"],
      });
      const expectedBlobs = new Set(
        multi.images.flatMap((i) => [i.configDigest, ...i.layers.map((l) => l.digest)]),
      );
      expect(new Set(pause!.blobs.map((b) => b.digest))).toEqual(expectedBlobs);
      expect(pause!.blobHosts).toEqual({ [k.host]: expectedBlobs.size });
      expect(app).toMatchObject({ status: "pass", digest: single.digest });
      expect(report.files.map((f) => [f.path, f.status])).toEqual([
        [release.files.kubectl, "pass"],
        [release.files.kubeadm, "pass"],
      ]);
      expect(report.files[0]!.checksums.map((c) => c.status)).toEqual(["match", "match"]);
      expect(report.files[1]!.checksums.map((c) => c.status)).toEqual(["match", "missing"]);
      // Served by the mirror itself (fetched once from the upstream, verified, then stored).
      expect(report.files[0]!.redirects).toEqual([]);
      expect(Object.fromEntries(report.access.map((a) => [a.check, a.status]))).toEqual({
        "anonymous-ping": "pass",
        "anonymous-pull": "pass",
        "anonymous-push": "pass",
        "rw-push": "pass",
        "ro-pull": "pass",
        "ro-push": "pass",
        cleanup: "pass",
      });
    });

    it("reports the host each blob was redirected to (archeio-style blob copies)", async () => {
      const { code, report } = await validateJson(
        "--registry",
        redirector.url,
        "--image",
        "pause:3.10",
        "--anonymous=false",
      );
      expect(code).toBe(0);
      const pause = report.images[0]!;
      expect(pause.status).toBe("pass");
      expect(Object.keys(pause.blobHosts)).toEqual([blobs.host]);
      for (const b of pause.blobs)
        expect(b.redirects).toEqual([`${blobs.url}/containers/images/${b.digest}`]);
    });

    it("fails on a blob whose bytes do not match its digest, and on a tag HEAD does not resolve", async () => {
      const { code, report } = await validateJson(
        "--registry",
        corrupter.url,
        "--image",
        "k8s/app:v1",
        "--image",
        "pause:3.10",
        "--anonymous=false",
        "--retry-times",
        "0",
      );
      expect(code).toBe(1);
      expect(report.images.map((i) => i.status)).toEqual(["fail", "fail"]);
      expect(report.images[0]!.message).toContain(single.images[0]!.layers[0]!.digest);
      expect(report.images[0]!.message).toMatch(/arrived with digest/);
      // Every blob of pause checked out, but its tag is broken for HEAD.
      expect(report.images[1]!.blobs.length).toBeGreaterThan(0);
      expect(report.images[1]!.message).toBe(
        `HEAD pause:3.10 answers 404, but GET serves ${multi.digest}: clients that resolve with HEAD (containerd, docker) get another image or none`,
      );
    });

    it("fails on a file whose published checksum is wrong, and on one with none unless allowed", async () => {
      const bad = await validateJson(
        "--artifacts",
        files.url,
        "--file",
        release.files.bad!,
        "--file",
        release.files.nosums!,
      );
      expect(bad.code).toBe(1);
      expect(bad.report.files.map((f) => f.status)).toEqual(["fail", "fail"]);
      expect(bad.report.files[0]!.checksums.map((c) => c.status)).toEqual(["mismatch", "match"]);
      expect(bad.report.files[0]!.message).toMatch(/sha256 is [0-9a-f]{64}, but .*bad\.sha256 says 0{64}/);
      expect(bad.report.files[1]!.message).toMatch(/neither .*\.sha256 nor .*\.sha512/);
      const allowed = await validateJson(
        "--artifacts",
        files.url,
        "--file",
        release.files.nosums!,
        "--allow-missing-checksums",
      );
      expect(allowed.code).toBe(0);
      expect(allowed.report.files[0]!.status).toBe("warn");
      const missing = await validateJson("--artifacts", files.url, "--file", "release/nope");
      expect(missing.code).toBe(1);
      expect(missing.report.files[0]!.message).toMatch(/HTTP 404/);
    });

    it("fails when anonymous callers cannot pull", async () => {
      const { code, report } = await validateJson("--registry", closed.url, "--image", "pause:3.10");
      expect(code).toBe(1);
      expect(report.images[0]!.status).toBe("fail");
      const byCheck = Object.fromEntries(report.access.map((a) => [a.check, a]));
      expect(byCheck["anonymous-ping"]!.status).toBe("fail");
      expect(byCheck["anonymous-pull"]!.status).toBe("fail");
      expect(byCheck["anonymous-push"]!.status).toBe("pass");
      // The same registry passes for a caller with an account.
      const withCreds = await validateJson(
        "--registry",
        closed.url,
        "--image",
        "pause:3.10",
        "--creds",
        "reader:r-pass",
        "--anonymous=false",
      );
      expect(withCreds.code).toBe(0);
    });

    it("fails when the read-only account can push, and cleans up what it pushed", async () => {
      const { code, report } = await validateJson(
        "--registry",
        k.url,
        "--anonymous=false",
        "--ro-creds",
        "pusher:p-pass",
        ...tls(),
      );
      expect(code).toBe(1);
      const byCheck = Object.fromEntries(report.access.map((a) => [a.check, a]));
      expect(byCheck["ro-push"]).toMatchObject({ status: "fail" });
      expect(byCheck["ro-push"]!.message).toMatch(/read-only account 'pusher' can push/);
      expect(byCheck.cleanup).toMatchObject({ status: "pass" });
    });

    it("fails when the read-write account cannot push", async () => {
      const { code, report } = await validateJson(
        "--registry",
        k.url,
        "--anonymous=false",
        "--rw-creds",
        "reader:r-pass",
        ...tls(),
      );
      expect(code).toBe(1);
      const rw = report.access.find((a) => a.check === "rw-push")!;
      expect(rw.status).toBe("fail");
      expect(rw.message).toMatch(/'reader' cannot push .*HTTP 403/);
    });

    it("refuses an untrusted certificate unless told", async () => {
      const strict = await validateJson("--registry", k.url, "--image", "pause:3.10", "--anonymous=false");
      expect(strict.code).toBe(1);
      expect(strict.report.images[0]!.message).toMatch(/certificate/i);
      const lax = await validateJson(
        "--registry",
        k.url,
        "--image",
        "pause:3.10",
        "--anonymous=false",
        "--tls-verify=false",
      );
      expect(lax.code).toBe(0);
      const certDir = join(work, "certs.d");
      await mkdir(certDir, { recursive: true });
      await writeFile(join(certDir, "ca.crt"), await readFile(pki.caCert));
      const dir = await validateJson(
        "--registry",
        k.url,
        "--image",
        "pause:3.10",
        "--anonymous=false",
        "--cert-dir",
        certDir,
      );
      expect(dir.code).toBe(0);
    });
  },
);
