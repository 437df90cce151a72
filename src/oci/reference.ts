import { isDigest } from "./digest.ts";
import { RegistryError } from "./errors.ts";
import { isValidTag } from "./names.ts";

export type Reference = { kind: "digest"; digest: string } | { kind: "tag"; tag: string };

/** A manifest reference from a URL: a digest, else a tag. */
export function parseReference(ref: string): Reference {
  if (ref.includes(":")) {
    if (!isDigest(ref)) {
      throw new RegistryError(
        "DIGEST_INVALID",
        `'${ref.slice(0, 150)}' is neither a valid tag nor a supported digest`,
      );
    }
    return { kind: "digest", digest: ref };
  }
  if (!isValidTag(ref)) {
    throw new RegistryError(
      "MANIFEST_INVALID",
      `invalid tag '${ref.slice(0, 150)}': up to 128 characters of letters, digits, _ . -, not starting with . or -`,
      { detail: { tag: ref.slice(0, 300) } },
    );
  }
  return { kind: "tag", tag: ref };
}
