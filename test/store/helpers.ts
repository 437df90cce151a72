import { Readable } from "node:stream";
import type { LocalRegistry } from "../../src/registry/local.ts";
import { imageManifest, ociManifest, sha256 } from "../helpers/push.ts";

/** A settable clock for the store: pushes and pulls are stamped with it. */
export class TestClock {
  constructor(public t: number) {}
  readonly now = () => this.t;
}

export const day = 86_400_000;

/**
 * Pushes a small image straight into a store (config and one layer unique to `seed`) and returns
 * its digest; `subject` makes it a referrer, `mirrored` stores it as pull-through does.
 */
export async function putImage(
  reg: LocalRegistry,
  repo: string,
  reference: string | undefined,
  seed: string,
  opts: { subject?: string; mirrored?: boolean; layerBytes?: number } = {},
): Promise<string> {
  const config = Buffer.from(JSON.stringify({ seed }));
  const layer = Buffer.alloc(opts.layerBytes ?? 64, `layer of ${seed} `);
  for (const b of [config, layer]) await reg.putBlob(repo, sha256(b), Readable.from([b]));
  const extra = opts.subject
    ? {
        artifactType: "application/example",
        subject: { mediaType: ociManifest, digest: opts.subject, size: 1 },
      }
    : {};
  const bytes = imageManifest(config, [layer], extra);
  const r = await reg.putManifest(repo, reference ?? sha256(bytes), bytes, ociManifest, {
    mirrored: opts.mirrored ?? false,
  });
  return r.digest;
}
