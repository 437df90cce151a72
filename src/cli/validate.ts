import { parsePlatform } from "../copy/platform.ts";
import { isValidName } from "../oci/names.ts";
import { CredentialsError, parseCredsFlag } from "../remote/credentials.ts";
import { ImageReferenceError } from "../remote/reference.ts";
import { loadCertDir, type TlsMaterial, withCaFile } from "../remote/tls.ts";
import { parseImageArg } from "../validate/images.ts";
import { formatText } from "../validate/report.ts";
import { type ValidateOptions, validate } from "../validate/validate.ts";
import { type FlagSpec, intFlag, type ParsedFlags, parseFlags, UsageError } from "./args.ts";

export const validateUsage = `Usage: kagami validate --registry URL [--image REF]... [--artifacts URL --file PATH...] [FLAGS]

Checks a registry and a release-file host the way registry.k8s.io's mirror validation does: pulls
each image as a client would (every platform, or those of --platform), verifying every manifest and
blob digest without storing anything; downloads each file and checks it against the .sha256/.sha512
published beside it; checks anonymous pulls work and anonymous pushes do not; with --ro-creds and
--rw-creds, that the read-only account pulls but cannot push and the read-write one can push. Where
blob requests were redirected (to a CDN, a regional copy), the report says which host served them.
Exits 0 when every check passed (warnings allowed), 1 when any failed, 2 on a usage error.

Flags:
      --registry URL            the registry (https://host[:port]; http:// for plain HTTP)
      --image REF               an image to pull, relative to the registry: pause:3.10, repo@sha256:...
      --platform OS/ARCH[/VAR]  pull only these platforms of an index (repeatable; default: all)
      --artifacts URL           the release-file host, e.g. https://dl.example.org
      --file PATH               a file below --artifacts, e.g. release/v1.31.0/bin/linux/amd64/kubectl
      --allow-missing-checksums a file with neither .sha256 nor .sha512 is a warning, not a failure
      --creds USER:PASS         pull the images with these credentials (default: anonymously)
      --anonymous=false         skip the anonymous checks (a registry that is not public)
      --ro-creds USER:PASS      a read-only account: must pull, must not push
      --rw-creds USER:PASS      a read-write account: must push (its test image is deleted afterwards
                                where the registry allows deletes)
      --scratch-repo NAME       where push checks write (default kagami-validate/scratch)
      --tls-verify=BOOL         verify TLS certificates (default true)
      --cert-dir DIR            CA certificates (*.crt) and client.cert/client.key, docker's layout
      --certificate-authority FILE  a PEM file of CA certificates to trust
      --concurrency N           blobs downloaded at once (default 4)
      --retry-times N           retries of a failed request or blob (default 2)
  -o, --output text|json        the report format (default text)
  -h, --help`;

const flags: Record<string, FlagSpec> = {
  registry: { type: "string" },
  image: { type: "string", multiple: true },
  platform: { type: "string", multiple: true },
  artifacts: { type: "string" },
  file: { type: "string", multiple: true },
  "allow-missing-checksums": { type: "boolean" },
  creds: { type: "string" },
  anonymous: { type: "boolean" },
  "ro-creds": { type: "string" },
  "rw-creds": { type: "string" },
  "scratch-repo": { type: "string" },
  "tls-verify": { type: "boolean" },
  "cert-dir": { type: "string" },
  "certificate-authority": { type: "string" },
  concurrency: { type: "string" },
  "retry-times": { type: "string" },
  output: { type: "string", short: "o" },
  help: { type: "boolean", short: "h" },
};

function str(f: ParsedFlags, name: string): string | undefined {
  const v = f[name];
  return typeof v === "string" ? v : undefined;
}

function list(f: ParsedFlags, name: string): string[] {
  return (f[name] as string[] | undefined) ?? [];
}

/** `host[:port]` means https, as for docker; a path is refused, the API lives at the root. */
function baseUrl(flag: string, value: string, allowPath: boolean): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `https://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`--${flag} '${value}' is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new UsageError(`--${flag} must be an http:// or https:// URL`);
  if (url.username || url.password)
    throw new UsageError(`--${flag} must not carry credentials; use --creds, --ro-creds or --rw-creds`);
  if (!allowPath && url.pathname !== "/")
    throw new UsageError(`--${flag} takes the registry's root URL, without a path ('${url.pathname}')`);
  return allowPath ? `${url.origin}${url.pathname.replace(/\/+$/, "")}` : url.origin;
}

function creds(f: ParsedFlags, name: string): ValidateOptions["readOnly"] {
  const v = str(f, name);
  if (v === undefined) return undefined;
  const c = parseCredsFlag(v);
  if (!c.password) throw new UsageError(`--${name} needs USER:PASS`);
  return c;
}

function tlsMaterial(f: ParsedFlags): TlsMaterial | undefined {
  const dir = str(f, "cert-dir");
  const caFile = str(f, "certificate-authority");
  if (!dir && !caFile) return undefined;
  const tls: TlsMaterial = dir ? loadCertDir(dir) : {};
  if (!caFile) return tls;
  try {
    return withCaFile(tls, caFile);
  } catch (err) {
    throw new UsageError(`--certificate-authority: ${(err as Error).message}`);
  }
}

export function validateOptions(f: ParsedFlags): ValidateOptions {
  const registry = str(f, "registry");
  const artifacts = str(f, "artifacts");
  const files = list(f, "file");
  if (!registry && !artifacts) throw new UsageError("give --registry URL, --artifacts URL or both");
  if (files.length && !artifacts)
    throw new UsageError("--file needs --artifacts URL, the host the files are below");
  if (artifacts && !files.length)
    throw new UsageError("--artifacts needs at least one --file PATH to download");
  for (const name of ["image", "ro-creds", "rw-creds", "creds"]) {
    if (f[name] !== undefined && !registry) throw new UsageError(`--${name} needs --registry URL`);
  }
  const scratch = str(f, "scratch-repo");
  // The push checks write, and clean up, under this name: one outside the spec's grammar
  // (`../x`, spaces) would put other paths in their requests.
  if (scratch !== undefined && !isValidName(scratch))
    throw new UsageError(`--scratch-repo '${scratch}' is not a repository name such as team/scratch`);
  const platforms = list(f, "platform");
  const opts: ValidateOptions = {
    images: list(f, "image"),
    files,
    platforms: { kind: "all" },
    tlsVerify: f["tls-verify"] !== false,
    anonymous: f.anonymous !== false,
    scratchRepo: scratch ?? "kagami-validate/scratch",
    allowMissingChecksums: f["allow-missing-checksums"] === true,
    concurrency: intFlag(f, "concurrency", 4, 1),
    retries: intFlag(f, "retry-times", 2),
  };
  if (platforms.length) {
    try {
      opts.platforms = {
        kind: "platforms",
        platforms: platforms.map(parsePlatform),
      };
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  if (registry) opts.registry = baseUrl("registry", registry, false);
  if (artifacts) opts.artifacts = baseUrl("artifacts", artifacts, true);
  const tls = tlsMaterial(f);
  if (tls) opts.tls = tls;
  const pull = creds(f, "creds");
  if (pull) opts.pullCredentials = pull;
  const ro = creds(f, "ro-creds");
  if (ro) opts.readOnly = ro;
  const rw = creds(f, "rw-creds");
  if (rw) opts.readWrite = rw;
  return opts;
}

/** `kagami validate`. Returns the exit status: 0 passed, 1 a check failed, 2 usage. */
export async function validateCommand(argv: string[]): Promise<number> {
  let opts: ValidateOptions;
  let output: string;
  try {
    const { flags: f, positionals } = parseFlags(argv, flags);
    if (f.help) {
      process.stdout.write(`${validateUsage}\n`);
      return 0;
    }
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    output = str(f, "output") ?? "text";
    if (output !== "text" && output !== "json") throw new UsageError("--output takes text or json");
    opts = validateOptions(f);
    // Refuse a bad --image before any network traffic.
    if (opts.registry) {
      for (const i of opts.images) parseImageArg(i, new URL(opts.registry).host);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof ImageReferenceError || err instanceof CredentialsError) {
      process.stderr.write(`kagami validate: ${err.message}\n(see kagami validate --help)\n`);
      return 2;
    }
    throw err;
  }
  const report = await validate(opts);
  process.stdout.write(output === "json" ? `${JSON.stringify(report, null, 2)}\n` : formatText(report));
  return report.ok ? 0 : 1;
}
