import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { digestOf } from "../oci/digest.ts";
import { MediaType } from "../oci/mediatypes.ts";
import { parseChallenges } from "../remote/challenge.ts";
import type { BasicCredentials } from "../remote/credentials.ts";
import { UpstreamError } from "../remote/errors.ts";
import type { RemoteRegistry } from "../remote/remote.ts";
import { type Connection, dockerUserAgent, openClient } from "./client.ts";
import type { ImageRef } from "./images.ts";
import type { AccessResult } from "./report.ts";

const ociConfig = "application/vnd.oci.image.config.v1+json";

export interface AccessOptions {
  /** Images to read; the first is the one each account is asked for. */
  images: ImageRef[];
  anonymous: boolean;
  readOnly?: BasicCredentials;
  readWrite?: BasicCredentials;
  /** Where push checks write; a tiny image under a `validate-…` tag. */
  scratchRepo: string;
}

/** A tiny image unique to one run, so a push really writes and a delete removes only what we wrote. */
interface ScratchImage {
  tag: string;
  config: Buffer;
  configDigest: string;
  manifest: Buffer;
  digest: string;
}

function scratchImage(label: string): ScratchImage {
  const nonce = randomBytes(8).toString("hex");
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [] },
      config: { Labels: { "io.kagami.validate": `${label}-${nonce}` } },
    }),
  );
  const configDigest = digestOf(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: ociConfig, digest: configDigest, size: config.length },
      layers: [],
      annotations: { "org.opencontainers.image.created": new Date().toISOString() },
    }),
  );
  return {
    tag: `validate-${stamp}-${label}-${nonce.slice(0, 6)}`,
    config,
    configDigest,
    manifest,
    digest: digestOf(manifest),
  };
}

/**
 * 401 or 403 from the registry or its token service: the refusal a push without rights must get.
 * 405 too: a pull-only front (archeio at registry.k8s.io, a Kagami redirector) has no write
 * methods at all, which refuses every account's push more firmly still.
 */
function refusal(err: unknown): number | undefined {
  if (!(err instanceof UpstreamError)) return undefined;
  const s = err.upstreamStatus;
  if (s === 401 || s === 403 || s === 405) return s;
  if (err.code === "UNAUTHORIZED" || err.code === "DENIED") return s ?? 401;
  return undefined;
}

function text(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}

/**
 * Tries to push `image` as `who` and says how the registry answered: `refused` (401/403, what a
 * reader must get), `pushed`, or `error` for any other failure, which also means the registry let
 * the account past its access check.
 */
async function tryPush(
  client: RemoteRegistry,
  repo: string,
  image: ScratchImage,
): Promise<{ outcome: "refused" | "pushed" | "error" | "unreached"; message: string; detail?: string }> {
  try {
    await client.putBlob(repo, image.configDigest, Readable.from([image.config]), image.config.length);
    await client.putManifest(repo, image.tag, image.manifest, MediaType.ociManifest);
    return { outcome: "pushed", message: `pushed ${repo}:${image.tag}` };
  } catch (err) {
    const status = refusal(err);
    if (status !== undefined)
      return { outcome: "refused", message: `refused with HTTP ${status}`, detail: text(err) };
    // No HTTP answer at all (refused connection, TLS, DNS): nothing got past anything.
    if (!(err instanceof UpstreamError) || err.upstreamStatus === undefined)
      return { outcome: "unreached", message: text(err) };
    return { outcome: "error", message: text(err) };
  }
}

/** Deletes what a push check wrote; says what it could not remove. */
async function removeScratch(client: RemoteRegistry, repo: string, image: ScratchImage): Promise<string[]> {
  const left: string[] = [];
  const del = async (path: string, what: string) => {
    try {
      const res = await client.http.send({
        method: "DELETE",
        path,
        scopes: [`repository:${repo}:pull,push,delete`],
        idempotent: true,
      });
      await res.body.dump().catch(() => {});
      if (res.status !== 202 && res.status !== 200 && res.status !== 404) {
        left.push(`${what} (DELETE answered HTTP ${res.status})`);
      }
    } catch (err) {
      left.push(`${what} (${text(err)})`);
    }
  };
  await del(`/v2/${repo}/manifests/${image.digest}`, `${repo}:${image.tag}`);
  if (left.length === 0) await del(`/v2/${repo}/blobs/${image.configDigest}`, `blob ${image.configDigest}`);
  return left;
}

/** GET /v2/ as the docker CLI sends it: 200, directly or after an (anonymous) Bearer token, is what docker needs. */
async function ping(client: RemoteRegistry): Promise<{ status: number; challenge?: string }> {
  const res = await client.http.send({ method: "GET", path: "/v2/", scopes: [], idempotent: true });
  await res.body.dump().catch(() => {});
  const scheme = parseChallenges(res.headers["www-authenticate"])[0]?.scheme;
  return scheme ? { status: res.status, challenge: scheme } : { status: res.status };
}

async function canPull(client: RemoteRegistry, image: ImageRef): Promise<string | undefined> {
  try {
    const m = await client.getManifest(image.repo, image.reference);
    return m ? undefined : `${image.text} is not there (404)`;
  } catch (err) {
    return text(err);
  }
}

/** What the checks share: the registry, the results so far, and what must be deleted at the end. */
interface Run {
  opts: AccessOptions;
  add(check: string, status: AccessResult["status"], message: string): void;
  client(credentials?: BasicCredentials, userAgent?: string): RemoteRegistry;
  cleanup: { image: ScratchImage; by: string }[];
}

/** Anyone pulls, docker's token dance included, and nobody anonymous pushes. */
async function checkAnonymous(run: Run): Promise<void> {
  const { opts, add } = run;
  const anon = run.client(undefined, dockerUserAgent);
  try {
    const p = await ping(anon);
    if (p.status === 200)
      add("anonymous-ping", "pass", "GET /v2/ without credentials answers 200 (as docker asks it)");
    else
      add(
        "anonymous-ping",
        "fail",
        `GET /v2/ without credentials answers HTTP ${p.status}${p.challenge ? ` with a ${p.challenge} challenge` : ""}: a docker client without credentials gives up (anonymous pulls need 200 or a Bearer challenge that grants an anonymous token)`,
      );
  } catch (err) {
    add("anonymous-ping", "fail", `GET /v2/: ${text(err)}`);
  }
  const first = opts.images[0];
  if (first) {
    const why = await canPull(anon, first);
    if (why) add("anonymous-pull", "fail", `manifest ${first.text} without credentials: ${why}`);
    else add("anonymous-pull", "pass", `manifest ${first.text} readable without credentials`);
  }
  const image = scratchImage("anonymous");
  const r = await tryPush(run.client(), opts.scratchRepo, image);
  if (r.outcome === "refused") {
    add("anonymous-push", "pass", `anonymous push to ${opts.scratchRepo} ${r.message}`);
    return;
  }
  add(
    "anonymous-push",
    "fail",
    r.outcome === "pushed"
      ? `anyone can push: an anonymous client ${r.message}`
      : r.outcome === "unreached"
        ? `an anonymous push to ${opts.scratchRepo} could not be tried: ${r.message}`
        : `an anonymous push to ${opts.scratchRepo} got past the access check and failed later: ${r.message}`,
  );
  if (r.outcome === "pushed") run.cleanup.push({ image, by: "anonymous" });
}

/** The read-write account pushes and reads back; returns what it wrote. */
async function checkReadWrite(run: Run, account: BasicCredentials): Promise<ScratchImage | undefined> {
  const { opts, add } = run;
  const rw = run.client(account);
  const image = scratchImage("rw");
  const r = await tryPush(rw, opts.scratchRepo, image);
  if (r.outcome !== "pushed") {
    const why = r.detail ? `${r.message}: ${r.detail}` : r.message;
    add("rw-push", "fail", `'${account.username}' cannot push to ${opts.scratchRepo}: ${why}`);
    return undefined;
  }
  run.cleanup.unshift({ image, by: account.username });
  const back = await rw.headManifest(opts.scratchRepo, image.tag).catch(() => undefined);
  if (back?.digest === image.digest)
    add("rw-push", "pass", `'${account.username}' ${r.message} and read it back`);
  else
    add(
      "rw-push",
      "fail",
      `'${account.username}' ${r.message}, but reading it back did not give ${image.digest}`,
    );
  return image;
}

/** The read-only account pulls (an --image, else what the read-write check wrote) and is refused a push. */
async function checkReadOnly(run: Run, account: BasicCredentials, written?: ScratchImage): Promise<void> {
  const { opts, add } = run;
  const ro = run.client(account);
  const target =
    opts.images[0] ??
    (written
      ? { text: `${opts.scratchRepo}:${written.tag}`, repo: opts.scratchRepo, reference: written.tag }
      : undefined);
  if (target) {
    const why = await canPull(ro, target);
    if (why) add("ro-pull", "fail", `'${account.username}' cannot read ${target.text}: ${why}`);
    else add("ro-pull", "pass", `'${account.username}' reads ${target.text}`);
  } else {
    try {
      const p = await ping(ro);
      add(
        "ro-pull",
        p.status === 200 ? "pass" : "fail",
        `'${account.username}' GET /v2/ answers HTTP ${p.status}`,
      );
    } catch (err) {
      add("ro-pull", "fail", `'${account.username}' GET /v2/: ${text(err)}`);
    }
  }
  const image = scratchImage("ro");
  const r = await tryPush(ro, opts.scratchRepo, image);
  if (r.outcome === "refused") {
    add("ro-push", "pass", `'${account.username}' push to ${opts.scratchRepo} ${r.message}`);
    return;
  }
  add(
    "ro-push",
    "fail",
    r.outcome === "pushed"
      ? `the read-only account '${account.username}' can push: it ${r.message}`
      : r.outcome === "unreached"
        ? `a push as the read-only account '${account.username}' could not be tried: ${r.message}`
        : `the read-only account '${account.username}' got past the access check and failed later: ${r.message}`,
  );
  if (r.outcome === "pushed") run.cleanup.push({ image, by: account.username });
}

/**
 * The access a public mirror promises: anyone pulls without credentials and nobody anonymous
 * pushes; a read-only account pulls and cannot push; a read-write account pushes. Whatever was
 * pushed is deleted again where the registry allows it, by the most capable account given.
 */
export async function checkAccess(c: Connection, opts: AccessOptions): Promise<AccessResult[]> {
  const out: AccessResult[] = [];
  const clients: RemoteRegistry[] = [];
  const run: Run = {
    opts,
    add: (check, status, message) => out.push({ check, status, message }),
    client: (credentials, userAgent) => {
      const r = openClient(c, {
        ...(credentials ? { credentials } : {}),
        ...(userAgent ? { userAgent } : {}),
      });
      clients.push(r);
      return r;
    },
    cleanup: [],
  };
  try {
    if (opts.anonymous) await checkAnonymous(run);
    const written = opts.readWrite ? await checkReadWrite(run, opts.readWrite) : undefined;
    if (opts.readOnly) await checkReadOnly(run, opts.readOnly, written);
    if (run.cleanup.length === 0) return out;
    const remover = run.client(opts.readWrite ?? opts.readOnly);
    for (const { image, by } of run.cleanup) {
      const left = await removeScratch(remover, opts.scratchRepo, image);
      if (left.length === 0)
        run.add("cleanup", "pass", `removed ${opts.scratchRepo}:${image.tag} (pushed by ${by})`);
      else
        run.add(
          "cleanup",
          "warn",
          `left ${left.join(", ")}; delete it by hand or let garbage collection take it`,
        );
    }
  } finally {
    await Promise.all(clients.map((r) => r.close().catch(() => {})));
  }
  return out;
}
