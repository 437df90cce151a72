/**
 * Suite configuration, read only from the environment, with the same variables (and the same
 * boolean parsing) as the official opencontainers/distribution-spec conformance suite.
 */
import { randomUUID } from "node:crypto";

/** Go's strconv.ParseBool: "1", "t", "T", "TRUE", "true", "True" are true. */
export function parseBool(v: string | undefined): boolean {
  return v !== undefined && ["1", "t", "T", "TRUE", "true", "True"].includes(v.trim());
}

export const runId = randomUUID().slice(0, 8);

function str(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

export interface SuiteEnv {
  rootUrl: string;
  namespace: string;
  crossmountNamespace: string;
  username?: string;
  password?: string;
  authScope?: string;
  debug: boolean;
  pull: boolean;
  push: boolean;
  contentDiscovery: boolean;
  contentManagement: boolean;
  /** OCI_AUTOMATIC_CROSSMOUNT was set at all (the official suite only runs those checks then). */
  runAutomaticCrossmountTest: boolean;
  automaticCrossmountEnabled: boolean;
  deleteManifestBeforeBlobs: boolean;
  /** Pull against existing content instead of pushing it (OCI_TAG_NAME + OCI_MANIFEST_DIGEST + OCI_BLOB_DIGEST). */
  tagName?: string;
  manifestDigest?: string;
  blobDigest?: string;
  tagList?: string[];
  runPullSetup: boolean;
  runContentDiscoverySetup: boolean;
}

export function loadEnv(): SuiteEnv {
  const rootUrl = (str("OCI_ROOT_URL") ?? "").replace(/\/+$/, "");
  const tagName = str("OCI_TAG_NAME");
  const manifestDigest = str("OCI_MANIFEST_DIGEST");
  const blobDigest = str("OCI_BLOB_DIGEST");
  const tagListRaw = str("OCI_TAG_LIST");
  const automatic = process.env.OCI_AUTOMATIC_CROSSMOUNT;
  const delFirst = process.env.OCI_DELETE_MANIFEST_BEFORE_BLOBS;
  return {
    rootUrl,
    namespace: str("OCI_NAMESPACE") ?? `oci-conformance/${runId}`,
    crossmountNamespace: str("OCI_CROSSMOUNT_NAMESPACE") ?? `conformance-${randomUUID()}`,
    username: str("OCI_USERNAME"),
    password: str("OCI_PASSWORD"),
    authScope: str("OCI_AUTH_SCOPE"),
    debug: parseBool(process.env.OCI_DEBUG),
    pull: parseBool(process.env.OCI_TEST_PULL),
    push: parseBool(process.env.OCI_TEST_PUSH),
    contentDiscovery: parseBool(process.env.OCI_TEST_CONTENT_DISCOVERY),
    contentManagement: parseBool(process.env.OCI_TEST_CONTENT_MANAGEMENT),
    runAutomaticCrossmountTest: automatic !== undefined,
    automaticCrossmountEnabled: parseBool(automatic),
    // The official suite defaults to deleting manifests before the blobs they reference.
    deleteManifestBeforeBlobs: delFirst === undefined ? true : parseBool(delFirst),
    tagName,
    manifestDigest,
    blobDigest,
    tagList: tagListRaw?.split(","),
    runPullSetup: !(tagName && manifestDigest && blobDigest),
    runContentDiscoverySetup: tagListRaw === undefined,
  };
}

export const env = loadEnv();
