import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestPki, type TestPki } from "../helpers/tls.ts";

export interface ClientPki extends TestPki {
  clientCert: string;
  clientKey: string;
  /** docker certs.d layout: ca.crt, client.cert, client.key. */
  certDir: string;
  /** Only ca.crt. */
  caOnlyDir: string;
  /** Only client.cert and client.key (no CA). */
  clientOnlyDir: string;
}

/** The test CA and server certificate, plus a client certificate signed by the same CA. */
export function makeClientPki(): ClientPki {
  const pki = makeTestPki();
  const p = (f: string) => join(pki.dir, f);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  ssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    p("client.key"),
    "-out",
    p("client.csr"),
    "-subj",
    "/CN=kagami-client",
  );
  writeFileSync(p("client-ext.cnf"), "extendedKeyUsage=clientAuth\n");
  ssl(
    "x509",
    "-req",
    "-in",
    p("client.csr"),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-out",
    p("client.cert"),
    "-days",
    "2",
    "-extfile",
    p("client-ext.cnf"),
  );
  const certDir = p("certs.d");
  const caOnlyDir = p("ca-only");
  const clientOnlyDir = p("client-only");
  for (const d of [certDir, caOnlyDir, clientOnlyDir]) mkdirSync(d);
  copyFileSync(pki.caCert, join(certDir, "ca.crt"));
  copyFileSync(p("client.cert"), join(certDir, "client.cert"));
  copyFileSync(p("client.key"), join(certDir, "client.key"));
  copyFileSync(pki.caCert, join(caOnlyDir, "ca.crt"));
  copyFileSync(p("client.cert"), join(clientOnlyDir, "client.cert"));
  copyFileSync(p("client.key"), join(clientOnlyDir, "client.key"));
  return {
    ...pki,
    clientCert: p("client.cert"),
    clientKey: p("client.key"),
    certDir,
    caOnlyDir,
    clientOnlyDir,
  };
}
