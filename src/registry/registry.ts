import type { Readable } from "node:stream";
import type { Descriptor } from "../oci/manifest.ts";

export interface ManifestContent {
  digest: string;
  mediaType: string;
  size: number;
  bytes: Buffer;
}

export interface ManifestInfo {
  digest: string;
  mediaType: string;
  size: number;
}

export interface BlobContent {
  size: number;
  /** The requested bytes (whole blob, or the range asked for). */
  stream: Readable;
}

export interface PutManifestResult {
  digest: string;
  subject?: string;
}

export interface Page {
  last?: string;
  n?: number;
}

/**
 * What everything that holds images answers: the local store, an upstream registry over HTTP,
 * an OCI layout or archive. The copy engine and the server speak only this.
 */
export interface Registry {
  getManifest(repo: string, reference: string): Promise<ManifestContent | undefined>;
  headManifest(repo: string, reference: string): Promise<ManifestInfo | undefined>;
  putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    contentType?: string,
  ): Promise<PutManifestResult>;
  blobSize(repo: string, digest: string): Promise<number | undefined>;
  getBlob(
    repo: string,
    digest: string,
    range?: { start: number; end: number },
  ): Promise<BlobContent | undefined>;
  /**
   * Stores a blob whose digest (and, when given, size) is known up front; the content is verified
   * before it is visible. A body that errors leaves nothing behind.
   */
  putBlob(repo: string, digest: string, body: Readable, size?: number): Promise<void>;
  /**
   * Links a blob the store already holds (in `from`, or anywhere when it can tell) into `repo`
   * without a transfer. Resolves true when the blob is now in `repo`. Optional: the copy engine
   * uploads when it is missing or says false.
   */
  mountBlob?(repo: string, digest: string, from?: string): Promise<boolean>;
  listTags(repo: string, page?: Page): Promise<string[]>;
  catalog(page?: Page): Promise<string[]>;
  referrers(repo: string, digest: string, artifactType?: string): Promise<Descriptor[]>;
}
