import { redirectSchema } from "./redirect.ts";

/**
 * JSON Schema of zot's config format: every field zot knows, with the types Kagami checks.
 * It is also the list of field names (keys.ts): a key it does not name is an error, as in zot.
 * A bare `section` is one whose contents Kagami does not look into (a warning or a refusal
 * names it elsewhere).
 */
const section = { type: "object" };
const duration = {
  type: "string",
  format: "go-duration",
  description: 'a Go duration such as "30m", "6h" or "1h30m"',
};
const port = {
  description: "a TCP port: an integer or numeric string from 0 to 65535",
  anyOf: [
    { type: "integer", minimum: 0, maximum: 65535 },
    {
      type: "string",
      pattern: "^(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})$",
    },
  ],
};

const goRegexp = {
  type: "string",
  format: "regex",
  description: "a Go (RE2) regular expression, as zot reads it: no backreferences or lookaround",
};
const count = { type: "integer", minimum: 0, description: "an integer, 0 or more" };
const byteSize = {
  anyOf: [
    { type: "integer", minimum: 0 },
    { type: "string", format: "byte-size" },
  ],
  description: 'a size in bytes, or with a unit such as "500GiB", "1.5TB" or "800MB"',
};

/** zot's storage.retention, field for field. */
const retention = {
  type: "object",
  properties: {
    dryRun: { type: "boolean" },
    delay: duration,
    policies: {
      type: "array",
      items: {
        type: "object",
        properties: {
          repositories: { type: "array", items: { type: "string" } },
          deleteReferrers: { type: "boolean" },
          deleteUntagged: { type: "boolean" },
          keepTags: {
            type: "array",
            items: {
              type: "object",
              properties: {
                patterns: { type: "array", items: goRegexp },
                pulledWithin: duration,
                pushedWithin: duration,
                mostRecentlyPushedCount: count,
                mostRecentlyPulledCount: count,
              },
            },
          },
        },
      },
    },
  },
};

/** Kagami's limit on mirrored content in a store; zot has none. */
const cacheQuota = {
  type: "object",
  properties: {
    maxSize: byteSize,
    minFreeSpace: byteSize,
    keepPulledWithin: duration,
    dryRun: { type: "boolean" },
  },
  anyOf: [{ required: ["maxSize"] }, { required: ["minFreeSpace"] }],
  description: "an object with maxSize, minFreeSpace or both (see docs/retention.md)",
};

const storageFields = {
  rootDirectory: { type: "string", minLength: 1 },
  dedupe: { type: "boolean" },
  gc: { type: "boolean" },
  gcDelay: duration,
  gcInterval: duration,
  gcTimeWindow: {
    type: "string",
    format: "gc-window",
    description: 'a daily UTC window "HH:MM-HH:MM" such as "01:00-06:00"',
  },
  commit: { type: "boolean" },
  uploadMaxAge: duration,
  maxRepos: { type: "integer", minimum: 0 },
  remoteCache: { type: "boolean" },
  redirectBlobURL: { type: "boolean" },
  retention,
  cacheQuota,
  storageDriver: section,
  cacheDriver: section,
};

const stringList = { type: "array", items: { type: "string" } };
const actions = {
  type: "array",
  items: { enum: ["read", "create", "update", "delete", "detectManifestCollision"] },
};
const policy = {
  type: "object",
  // zot's `conditions` is named so that security-fields.ts refuses it rather than calling it unknown.
  properties: { users: stringList, groups: stringList, actions, conditions: {} },
};
const repoPolicy = {
  type: "object",
  properties: {
    policies: { type: "array", items: policy },
    defaultPolicy: actions,
    anonymousPolicy: actions,
  },
};

const positiveInt = { type: "integer", minimum: 1, description: "an integer greater than 0" };

const syncContent = {
  type: "object",
  properties: {
    prefix: { type: "string", minLength: 1 },
    destination: { type: "string" },
    stripPrefix: { type: "boolean" },
    platforms: stringList,
    tags: {
      type: "object",
      properties: {
        regex: goRegexp,
        excludeRegex: goRegexp,
        semver: {
          description: 'true (keep semver tags) or a semver range such as ">=1.29.0 <2"',
          anyOf: [{ type: "boolean" }, { type: "string", format: "semver-range" }],
        },
      },
    },
  },
  required: ["prefix"],
};

const syncRegistry = {
  type: "object",
  properties: {
    urls: {
      type: "array",
      minItems: 1,
      items: { type: "string", format: "registry-url", description: "a URL such as https://registry.k8s.io" },
    },
    onDemand: { type: "boolean" },
    pollInterval: duration,
    schedule: { type: "string", format: "cron", description: 'a cron expression such as "0 */6 * * *"' },
    tlsVerify: { type: "boolean" },
    certDir: { type: "string" },
    maxRetries: { type: "integer", minimum: 0, maximum: 100 },
    retryDelay: duration,
    maxRetryDelay: duration,
    onlySigned: { type: "boolean" },
    manifestCheckInterval: duration,
    negativeCacheTTL: duration,
    content: { type: "array", items: syncContent },
    preserveDigest: { type: "boolean" },
    platforms: stringList,
    allowLocalWrites: { type: "boolean" },
    syncTimeout: duration,
    syncLegacyCosignTags: { type: "boolean" },
    reqConcurrent: positiveInt,
    reqPerSec: { type: "number", exclusiveMinimum: 0, description: "a number of requests a second, above 0" },
    maxIdleConnsPerHost: positiveInt,
    credentialHelper: { type: "string" },
    oauth2CredentialHelper: section,
    disableHTTP2: { type: "boolean" },
  },
  required: ["urls"],
};

export const syncSchema = {
  type: "object",
  properties: {
    enable: { type: "boolean" },
    credentialsFile: { type: "string" },
    downloadDir: { type: "string" },
    registries: { type: "array", items: syncRegistry },
  },
};

/** Kagami's release-file service (config/artifacts.ts checks what a schema cannot). */
const artifactsSchema = {
  type: "object",
  properties: {
    enable: { type: "boolean" },
    rootDirectory: { type: "string", minLength: 1 },
    pathPrefix: {
      type: "string",
      pattern: "^(/[A-Za-z0-9._~-]+)+/?$",
      description: 'a URL path such as "/artifacts" (letters, digits, ".", "_", "~", "-" between slashes)',
    },
    address: { type: "string" },
    port,
    listing: { type: "boolean" },
    anonymous: { type: "boolean" },
    redirect: { type: "boolean" },
    upstream: {
      type: "object",
      properties: {
        url: {
          type: "string",
          pattern: "^https?://[^/?#]+(/[^?#]*)?$",
          description: "a URL such as https://dl.k8s.io",
        },
        verifyChecksums: { type: "boolean" },
        timeout: duration,
        negativeCacheTTL: duration,
      },
      required: ["url"],
    },
  },
  required: ["rootDirectory"],
};

export const configSchema = {
  type: "object",
  properties: {
    distSpecVersion: { type: "string", pattern: "^1\\.[0-9]+\\.[0-9]+(-.*)?$" },
    storage: {
      type: "object",
      properties: {
        ...storageFields,
        subPaths: {
          type: "object",
          additionalProperties: { type: "object", properties: storageFields, required: ["rootDirectory"] },
        },
      },
    },
    http: {
      type: "object",
      properties: {
        address: { type: "string" },
        port,
        realm: { type: "string" },
        externalUrl: { type: "string" },
        allowOrigin: { type: "string" },
        readTimeout: duration,
        writeTimeout: duration,
        ratelimit: section,
        compat: {
          type: "array",
          items: { enum: ["docker2s2"] },
          description: 'a list of compatibility modes; zot knows only "docker2s2"',
        },
        tls: {
          type: "object",
          properties: {
            cert: { type: "string", minLength: 1 },
            key: { type: "string", minLength: 1 },
            cacert: { type: "string" },
          },
          required: ["cert", "key"],
        },
        shutdownTimeout: duration,
        auth: {
          type: "object",
          properties: {
            htpasswd: {
              type: "object",
              properties: { path: { type: "string", minLength: 1 } },
              required: ["path"],
            },
            failDelay: { type: "integer", minimum: 0, maximum: 60 },
            ldap: section,
            bearer: section,
            openid: section,
            mtls: section,
            apikey: { type: "boolean" },
            sessionKeysFile: { type: "string" },
            sessionDriver: section,
            secureSession: { type: "boolean" },
          },
        },
        accessControl: {
          type: "object",
          properties: {
            groups: {
              type: "object",
              additionalProperties: { type: "object", properties: { users: stringList } },
            },
            repositories: { type: "object", additionalProperties: repoPolicy },
            adminPolicy: policy,
            metrics: { type: "object", properties: { users: stringList, anonymousPolicy: actions } },
          },
          additionalProperties: repoPolicy,
        },
      },
    },
    log: {
      type: "object",
      properties: {
        level: { enum: ["trace", "debug", "info", "warn", "error", "fatal", "panic", "silent"] },
        output: { type: "string" },
        audit: { type: "string" },
      },
    },
    extensions: {
      type: "object",
      properties: {
        sync: syncSchema,
        redirect: redirectSchema,
        artifacts: artifactsSchema,
        search: section,
        metrics: {
          type: "object",
          properties: {
            enable: { type: "boolean" },
            prometheus: {
              type: "object",
              properties: {
                path: {
                  type: "string",
                  pattern: "^(/(?!v2(/|$))[^?#]*)?$",
                  description: 'a URL path such as "/metrics", outside /v2/',
                },
              },
            },
          },
        },
        scrub: section,
        lint: section,
        ui: section,
        mgmt: section,
        apikey: section,
        trust: section,
        events: section,
      },
    },
    scheduler: section,
    cluster: section,
  },
} as const;
