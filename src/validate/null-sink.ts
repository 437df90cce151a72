import { type Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { digestOf, parseDigest } from "../oci/digest.ts";
import type { Descriptor } from "../oci/manifest.ts";
import type {
  BlobContent,
  ManifestContent,
  ManifestInfo,
  PutManifestResult,
  Registry,
} from "../registry/registry.ts";

/**
 * A destination that keeps nothing: the copy engine pulls every manifest and blob into it through
 * its verifier, so a copy into this sink is a full pull with every digest checked, and no disk used.
 * It holds nothing, so nothing is skipped and every blob is downloaded.
 */
export class NullRegistry implements Registry {
  /** Bytes read from blob bodies, which the copy engine has verified on the way in. */
  bytes = 0;

  async getManifest(): Promise<ManifestContent | undefined> {
    return undefined;
  }

  async headManifest(): Promise<ManifestInfo | undefined> {
    return undefined;
  }

  async putManifest(_repo: string, reference: string, bytes: Buffer): Promise<PutManifestResult> {
    const algorithm = reference.includes(":") ? parseDigest(reference).algorithm : "sha256";
    return { digest: digestOf(bytes, algorithm) };
  }

  async blobSize(): Promise<number | undefined> {
    return undefined;
  }

  async getBlob(): Promise<BlobContent | undefined> {
    return undefined;
  }

  /** Reads the body to its end: the verifier in front of it errors the stream on a wrong byte. */
  async putBlob(_repo: string, _digest: string, body: Readable): Promise<void> {
    await pipeline(
      body,
      new Writable({
        write: (chunk: Buffer, _enc, cb) => {
          this.bytes += chunk.length;
          cb();
        },
      }),
    );
  }

  async listTags(): Promise<string[]> {
    return [];
  }

  async catalog(): Promise<string[]> {
    return [];
  }

  async referrers(): Promise<Descriptor[]> {
    return [];
  }
}
