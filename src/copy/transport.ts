import { stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { OciArchiveReader, OciArchiveWriter } from "../layout/archive.ts";
import { DockerArchiveReader } from "../layout/docker-archive.ts";
import { OciLayout } from "../layout/layout.ts";
import type { Registry } from "../registry/registry.ts";
import {
  type BasicCredentials,
  type CredentialLookup,
  CredentialStore,
  loadAuthFile,
  loadDefaultAuthFiles,
} from "../remote/credentials.ts";
import {
  formatImageReference,
  ImageReferenceError,
  manifestReference,
  parseImageReference,
  registryUrls,
} from "../remote/reference.ts";
import { RemoteRegistry, type RemoteRegistryOptions } from "../remote/remote.ts";

/** A parsed transport reference, skopeo style. */
export type TransportRef =
  | { transport: "docker"; host: string; repo: string; tag?: string; digest?: string }
  | { transport: "oci"; path: string; reference: string }
  | { transport: "oci-archive"; path: string; reference: string }
  | { transport: "docker-archive"; path: string; reference: string }
  | { transport: "kagami"; repo: string; tag?: string; digest?: string };

export const transportHelp = `  docker://[HOST[:PORT]/]REPO[:TAG|@DIGEST]   a registry (Docker Hub when no host is named)
  oci:DIR[:REF]                               an OCI image layout directory
  oci-archive:FILE[:REF]                      an OCI layout in a tar file
  docker-archive:FILE[:REPO:TAG]              what docker save writes (source only)
  kagami://REPO[:TAG|@DIGEST]                 this machine's Kagami store (--config / --root), server running or not`;

/** Parses `docker://`, `oci:`, `oci-archive:`, `docker-archive:` and `kagami://` references. */
export function parseTransport(s: string): TransportRef {
  if (s.startsWith("docker://")) {
    const r = parseImageReference(s.slice("docker://".length));
    return { transport: "docker", ...r };
  }
  if (s.startsWith("kagami://") || s.startsWith("kagami:")) {
    const rest = s.replace(/^kagami:(\/\/)?/, "");
    const r = parseImageReference(`localhost/${rest}`);
    const out: TransportRef = { transport: "kagami", repo: r.repo };
    if (r.tag) out.tag = r.tag;
    if (r.digest) out.digest = r.digest;
    return out;
  }
  for (const t of ["oci-archive", "oci", "docker-archive"] as const) {
    if (s.startsWith(`${t}:`)) {
      const rest = s.slice(t.length + 1);
      // containers/image splits at the first colon: the path cannot hold one
      const colon = rest.indexOf(":");
      const path = colon < 0 ? rest : rest.slice(0, colon);
      const reference = colon < 0 ? "" : rest.slice(colon + 1);
      if (path === "") throw new ImageReferenceError(`'${s}': no path`);
      return { transport: t, path, reference };
    }
  }
  throw new ImageReferenceError(
    `'${s}' names no transport: use docker://, oci:, oci-archive:, docker-archive: or kagami:// (see kagami copy --help)`,
  );
}

export function formatTransport(t: TransportRef): string {
  switch (t.transport) {
    case "docker":
      return `docker://${formatImageReference(t)}`;
    case "kagami":
      return `kagami://${t.repo}${t.tag ? `:${t.tag}` : ""}${t.digest ? `@${t.digest}` : ""}`;
    default:
      return `${t.transport}:${t.path}${t.reference ? `:${t.reference}` : ""}`;
  }
}

export interface RemoteSettings {
  tlsVerify?: boolean;
  certDir?: string;
  /** A PEM file of extra CAs to trust. */
  caFile?: string;
  creds?: BasicCredentials;
  authFile?: string;
  maxRetries?: number;
  retryDelay?: number;
  onRetry?: RemoteRegistryOptions["onRetry"];
  /** The flag that lets this end speak plain HTTP, named when an https:// URL answers in it. */
  plainHttpFlag?: string;
}

/** The certs.d directories containers/image and docker look in for a host. */
async function defaultCertDir(host: string): Promise<string | undefined> {
  const candidates = [
    join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "containers", "certs.d", host),
    join("/etc/containers/certs.d", host),
    join("/etc/docker/certs.d", host),
  ];
  for (const c of candidates) {
    const st = await stat(c).catch(() => undefined);
    if (st?.isDirectory()) return c;
  }
  return undefined;
}

export function credentialLookup(settings: RemoteSettings): BasicCredentials | CredentialLookup | undefined {
  if (settings.creds) return settings.creds;
  const store = settings.authFile ? loadAuthFile(settings.authFile) : loadDefaultAuthFiles();
  return store.size ? store.lookup : new CredentialStore().lookup;
}

export async function remoteFor(host: string, settings: RemoteSettings): Promise<RemoteRegistry> {
  const tlsVerify = settings.tlsVerify ?? true;
  const opts: RemoteRegistryOptions = { urls: registryUrls(host, tlsVerify), tlsVerify };
  const certDir = settings.certDir ?? (await defaultCertDir(host));
  if (certDir) opts.certDir = certDir;
  if (settings.caFile) opts.caFile = settings.caFile;
  const creds = credentialLookup(settings);
  if (creds) opts.credentials = creds;
  if (settings.maxRetries !== undefined) opts.maxRetries = settings.maxRetries;
  if (settings.retryDelay !== undefined) opts.retryDelay = settings.retryDelay;
  if (settings.onRetry) opts.onRetry = settings.onRetry;
  if (tlsVerify && settings.plainHttpFlag) {
    const flag = settings.plainHttpFlag;
    // A --*tls-verify flag is turned off; a switch like mirror's --insecure (oc's) is turned on.
    opts.plainHttpAdvice = () =>
      flag.endsWith("tls-verify")
        ? `if it is meant to, pass ${flag}=false (which also allows plain HTTP)`
        : `if it is meant to, pass ${flag} (which also allows plain HTTP)`;
  }
  return new RemoteRegistry(opts);
}

/** An opened end of a copy: the Registry, the names to use in it, and how to finish or abandon it. */
export interface OpenedEndpoint {
  registry: Registry;
  repo: string;
  /** Source: the reference to read. */
  reference: string;
  /** Destination: tags to write (none: by digest, or untagged in a layout). */
  tags: string[];
  /** Destination pinned by digest: the copy must produce exactly this. */
  digest?: string;
  name: string;
  /** Make the result durable/visible (archives are packed here). */
  commit(): Promise<void>;
  /** Release resources; after a failure, drop partial output. */
  close(failed: boolean): Promise<void>;
}

export interface OpenOptions {
  remote: RemoteSettings;
  /** Opens the local store that holds a repository, for kagami:// (the CLI knows where it is). */
  openLocal: (repo: string) => Promise<Registry>;
}

/** A tar read in place as a source; closing it removes its decompressed copy, if any. */
function archiveSource(
  reader: Registry & { close(): Promise<void> },
  reference: string,
  name: string,
): OpenedEndpoint {
  return {
    registry: reader,
    repo: "",
    reference,
    tags: [],
    name,
    commit: async () => {},
    close: () => reader.close(),
  };
}

export async function openEndpoint(
  t: TransportRef,
  role: "source" | "destination",
  opts: OpenOptions,
): Promise<OpenedEndpoint> {
  const name = formatTransport(t);
  const noop = async () => {};
  switch (t.transport) {
    case "docker": {
      const registry = await remoteFor(t.host, opts.remote);
      const out: OpenedEndpoint = {
        registry,
        repo: t.repo,
        reference: manifestReference(t),
        tags: t.tag ? [t.tag] : [],
        name,
        commit: noop,
        close: () => registry.close(),
      };
      if (t.digest) out.digest = t.digest;
      return out;
    }
    case "kagami": {
      const registry = await opts.openLocal(t.repo);
      const out: OpenedEndpoint = {
        registry,
        repo: t.repo,
        reference: t.digest ?? t.tag ?? "latest",
        tags: t.tag ? [t.tag] : [],
        name,
        commit: noop,
        close: noop,
      };
      if (t.digest) out.digest = t.digest;
      return out;
    }
    case "oci": {
      const layout = await OciLayout.open(t.path, { create: role === "destination" });
      return {
        registry: layout,
        repo: "",
        reference: t.reference,
        tags: t.reference ? [t.reference] : [],
        name,
        commit: () => layout.sync(),
        close: noop,
      };
    }
    case "docker-archive": {
      if (role === "destination") {
        throw new ImageReferenceError(
          `'${name}': docker-archive is only a source (Kagami reads what docker save writes); write an oci-archive: instead`,
        );
      }
      return archiveSource(await DockerArchiveReader.open(t.path), t.reference, name);
    }
    case "oci-archive": {
      if (role === "source") return archiveSource(await OciArchiveReader.open(t.path), t.reference, name);
      const writer = await OciArchiveWriter.create(t.path);
      let committed = false;
      return {
        registry: writer,
        repo: "",
        reference: t.reference,
        tags: t.reference ? [t.reference] : [],
        name,
        commit: async () => {
          await writer.commit();
          committed = true;
        },
        close: async () => {
          if (!committed) await writer.discard();
        },
      };
    }
  }
}
