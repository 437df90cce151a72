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
  /**
   * The same bytes without a buffer allocated per read, for a consumer that copies or hashes each
   * view before returning. Use this or `stream`, not both.
   */
  pump?: (sink: ViewSink) => BlobPump;
}

/** Bytes as a view valid only during the call; false asks the producer to pause until `resume()`. */
export type ViewSink = (view: Buffer) => boolean;

/** A transfer into a ViewSink. */
export interface BlobPump {
  /** Settles when the last byte was delivered, or with the failure. */
  done: Promise<void>;
  /** Lets a producer that the sink paused go on. */
  resume(): void;
  /** Stops the transfer; `done` rejects with `err`. */
  abort(err: Error): void;
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
