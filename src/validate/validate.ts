import type { PlatformFilter } from "../copy/platform.ts";
import type { BasicCredentials } from "../remote/credentials.ts";
import type { TlsMaterial } from "../remote/tls.ts";
import { checkAccess } from "./access.ts";
import { artifactAgent, checkFile } from "./artifacts.ts";
import type { Connection } from "./client.ts";
import { type ImageRef, parseImageArg, pullImage } from "./images.ts";
import { type FileResult, type ImageResult, summarize, type ValidationReport } from "./report.ts";

export interface ValidateOptions {
  /** `http(s)://host[:port]` of the registry; absent: only artifacts are checked. */
  registry?: string;
  images: string[];
  artifacts?: string;
  files: string[];
  platforms: PlatformFilter;
  tlsVerify: boolean;
  tls?: TlsMaterial;
  /** Credentials for the pulls; none: they are anonymous, as a mirror's users pull. */
  pullCredentials?: BasicCredentials;
  /** Check anonymous pulls work and anonymous pushes do not. */
  anonymous: boolean;
  readOnly?: BasicCredentials;
  readWrite?: BasicCredentials;
  scratchRepo: string;
  allowMissingChecksums: boolean;
  concurrency: number;
  retries: number;
}

/** Runs every check `opts` asks for and gathers one report; failures are in it, not thrown. */
export async function validate(opts: ValidateOptions): Promise<ValidationReport> {
  const images: ImageResult[] = [];
  const files: FileResult[] = [];
  let access: Awaited<ReturnType<typeof checkAccess>> = [];
  if (opts.registry) {
    const c: Connection = {
      url: opts.registry,
      tlsVerify: opts.tlsVerify,
      retries: opts.retries,
      ...(opts.tls ? { tls: opts.tls } : {}),
    };
    const host = new URL(opts.registry).host;
    const refs: ImageRef[] = opts.images.map((i) => parseImageArg(i, host));
    for (const ref of refs) {
      images.push(
        await pullImage(c, ref, {
          platforms: opts.platforms,
          concurrency: opts.concurrency,
          ...(opts.pullCredentials ? { credentials: opts.pullCredentials } : {}),
        }),
      );
    }
    const accessOpts: Parameters<typeof checkAccess>[1] = {
      images: refs,
      anonymous: opts.anonymous,
      scratchRepo: opts.scratchRepo,
    };
    if (opts.readOnly) accessOpts.readOnly = opts.readOnly;
    if (opts.readWrite) accessOpts.readWrite = opts.readWrite;
    access = await checkAccess(c, accessOpts);
  }
  if (opts.artifacts) {
    const a = {
      base: opts.artifacts,
      tlsVerify: opts.tlsVerify,
      allowMissingChecksums: opts.allowMissingChecksums,
      ...(opts.tls ? { tls: opts.tls } : {}),
    };
    const agent = artifactAgent(a);
    try {
      for (const f of opts.files) files.push(await checkFile(agent, a, f));
    } finally {
      await agent.close();
    }
  }
  return summarize(opts.registry, opts.artifacts, images, files, access);
}
