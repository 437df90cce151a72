/**
 * Access and authentication settings of zot's format that Kagami does not implement. Each is an
 * error, never a warning: ignoring one would grant more than the operator wrote (an `ldap`-only
 * config would have no accounts, so everyone could do everything; a policy `condition` would
 * stop limiting anything).
 */
import type { ConfigProblem } from "./config.ts";
import { isObject, type Json } from "./json.ts";

const useHtpasswd = "Kagami signs users in only with http.auth.htpasswd";
const mutualTls = `client certificate authentication (mutual TLS) is not implemented; ${useHtpasswd}`;

/** Authentication methods and the like under `http.auth`, with why each cannot be honoured. */
const refusedAuth: Record<string, string> = {
  ldap: `LDAP accounts are not implemented; ${useHtpasswd}`,
  bearer: `bearer token authentication is not implemented; ${useHtpasswd}`,
  openid: `OpenID Connect is not implemented; ${useHtpasswd}`,
  apikey: `API keys are not implemented; ${useHtpasswd}`,
  mtls: mutualTls,
};

/** Session settings of zot's web login: Kagami issues no sessions, so they neither grant nor limit. */
const sessionFields = new Set(["sessionKeysFile", "sessionDriver", "secureSession"]);

const policyFields = new Set(["users", "groups", "actions"]);
const repoPolicyFields = new Set(["policies", "defaultPolicy", "anonymousPolicy"]);
const accessControlSections = new Set(["groups", "repositories", "adminPolicy", "metrics"]);

const notImplemented = (what: string) =>
  `${what} is not implemented; remove it (Kagami refuses to start rather than ignore an access rule)`;

function checkActions(actions: unknown, path: string, out: ConfigProblem[]): void {
  if (!Array.isArray(actions)) return;
  actions.forEach((a, i) => {
    // zot's behaviour action: it limits deletes, so dropping it would allow more than written.
    if (a === "detectManifestCollision") {
      out.push({
        path: `${path}[${i}]`,
        message:
          "detectManifestCollision (refusing to delete a manifest other tags still use) is not implemented; remove it",
      });
    }
  });
}

function checkPolicy(policy: unknown, path: string, out: ConfigProblem[]): void {
  if (!isObject(policy)) return;
  for (const key of Object.keys(policy)) {
    if (!policyFields.has(key))
      out.push({ path: `${path}.${key}`, message: notImplemented(`policy '${key}'`) });
  }
  checkActions(policy.actions, `${path}.actions`, out);
}

function checkRepoPolicy(repo: unknown, path: string, out: ConfigProblem[]): void {
  if (!isObject(repo)) return;
  for (const key of Object.keys(repo)) {
    if (!repoPolicyFields.has(key)) {
      out.push({ path: `${path}.${key}`, message: notImplemented(`repository policy field '${key}'`) });
    }
  }
  if (Array.isArray(repo.policies)) {
    for (const [i, p] of repo.policies.entries()) checkPolicy(p, `${path}.policies[${i}]`, out);
  }
  checkActions(repo.defaultPolicy, `${path}.defaultPolicy`, out);
  checkActions(repo.anonymousPolicy, `${path}.anonymousPolicy`, out);
}

function checkAccessControl(acl: Json, path: string, out: ConfigProblem[]): void {
  for (const [key, value] of Object.entries(acl)) {
    const at = `${path}.${key}`;
    if (key === "repositories" && isObject(value)) {
      for (const [pattern, repo] of Object.entries(value)) checkRepoPolicy(repo, `${at}.${pattern}`, out);
    } else if (key === "adminPolicy") {
      checkPolicy(value, at, out);
    } else if (key === "groups" && isObject(value)) {
      for (const [group, def] of Object.entries(value)) {
        if (!isObject(def)) continue;
        for (const field of Object.keys(def)) {
          if (field !== "users") {
            out.push({ path: `${at}.${group}.${field}`, message: notImplemented(`group field '${field}'`) });
          }
        }
      }
    } else if (!accessControlSections.has(key)) {
      // zot's older form: repository patterns directly under accessControl.
      checkRepoPolicy(value, at, out);
    }
  }
}

function checkAuth(auth: Json, out: ConfigProblem[]): void {
  for (const [key, value] of Object.entries(auth)) {
    const path = `http.auth.${key}`;
    if (key === "failDelay" || sessionFields.has(key)) continue;
    if (key === "htpasswd") {
      if (!isObject(value)) continue;
      for (const field of Object.keys(value)) {
        if (field !== "path") out.push({ path: `${path}.${field}`, message: notImplemented(`'${field}'`) });
      }
      continue;
    }
    // zot's own default: no API keys, which grants nothing.
    if (key === "apikey" && value === false) continue;
    out.push({ path, message: refusedAuth[key] ?? notImplemented(`the authentication setting '${key}'`) });
  }
}

/**
 * Every access or authentication setting that Kagami would not enforce, in a config whose keys
 * keys.ts has brought to their canonical spelling (so `LDAP` or `CACert` is found here too).
 */
export function unenforcedSecuritySettings(raw: Json): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const http = raw.http;
  if (!isObject(http)) return out;
  if (isObject(http.auth)) checkAuth(http.auth, out);
  if (isObject(http.tls) && http.tls.cacert !== undefined)
    out.push({ path: "http.tls.cacert", message: mutualTls });
  if (isObject(http.accessControl)) checkAccessControl(http.accessControl, "http.accessControl", out);
  return out;
}
