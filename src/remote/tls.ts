import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { rootCertificates } from "node:tls";

export interface TlsMaterial {
  /** Trusted CAs: the system's plus every `*.crt` of the cert dir. Undefined: the system's alone. */
  ca?: string[];
  cert?: string;
  key?: string;
}

/**
 * Reads a directory in docker's `certs.d/<host>` layout: every `*.crt` is a CA to trust on top of
 * the system's, and `X.cert` with `X.key` is a client certificate (docker's `client.cert` / `client.key`).
 * A directory that does not exist adds nothing, as in docker, containers/image and zot.
 */
export function loadCertDir(dir: string): TlsMaterial {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new Error(`cannot read certificate directory ${dir}: ${(err as Error).message}`);
  }
  const out: TlsMaterial = {};
  const cas = names.filter((n) => n.endsWith(".crt"));
  if (cas.length > 0) out.ca = [...rootCertificates, ...cas.map((n) => readFileSync(join(dir, n), "utf8"))];
  for (const n of names.filter((x) => x.endsWith(".cert"))) {
    const keyName = `${n.slice(0, -".cert".length)}.key`;
    if (!names.includes(keyName)) {
      throw new Error(`client certificate ${join(dir, n)} has no matching key ${keyName}`);
    }
    if (out.cert) continue; // docker uses the first pair
    out.cert = readFileSync(join(dir, n), "utf8");
    out.key = readFileSync(join(dir, keyName), "utf8");
  }
  for (const n of names.filter((x) => x.endsWith(".key"))) {
    if (!names.includes(`${n.slice(0, -".key".length)}.cert`)) {
      throw new Error(`key ${join(dir, n)} has no matching certificate (.cert)`);
    }
  }
  return out;
}

/** Adds the CAs of one PEM file to what is trusted (the system's, unless a cert dir already chose). */
export function withCaFile(tls: TlsMaterial | undefined, file: string): TlsMaterial {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read certificate authority file ${file}: ${(err as Error).message}`);
  }
  return { ...(tls ?? {}), ca: [...(tls?.ca ?? rootCertificates), pem] };
}
