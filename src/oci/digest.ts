import { createHash, type Hash } from "node:crypto";
import { RegistryError } from "./errors.ts";

export type DigestAlgorithm = "sha256" | "sha512";

const encodedLength: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/** Grammar of the image spec: algorithm ":" encoded. */
const digestGrammar = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
  digest: string;
}

export function isSupportedAlgorithm(alg: string): alg is DigestAlgorithm {
  return alg === "sha256" || alg === "sha512";
}

/** Parses and validates a digest; anything malformed or of an unsupported algorithm is DIGEST_INVALID. */
export function parseDigest(value: string): ParsedDigest {
  if (!digestGrammar.test(value)) {
    throw new RegistryError(
      "DIGEST_INVALID",
      `'${truncate(value)}' is not a digest of the form algorithm:hex`,
    );
  }
  const idx = value.indexOf(":");
  const algorithm = value.slice(0, idx);
  const hex = value.slice(idx + 1);
  if (!isSupportedAlgorithm(algorithm)) {
    throw new RegistryError(
      "DIGEST_INVALID",
      `digest algorithm '${truncate(algorithm)}' is not supported; use sha256 or sha512`,
    );
  }
  if (hex.length !== encodedLength[algorithm] || !/^[a-f0-9]+$/.test(hex)) {
    throw new RegistryError(
      "DIGEST_INVALID",
      `${algorithm} digest must be ${encodedLength[algorithm]} lowercase hex characters`,
    );
  }
  return { algorithm, hex, digest: value };
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function newHash(alg: DigestAlgorithm): Hash {
  return createHash(alg);
}

export function digestOf(data: Uint8Array, alg: DigestAlgorithm = "sha256"): string {
  return `${alg}:${createHash(alg).update(data).digest("hex")}`;
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
