/**
 * JSON Schema of the fields Kagami reads from a zot-format config. Types only: unknown or
 * not-yet-implemented fields are reported as warnings elsewhere, so a zot config still loads.
 */
const duration = {
  type: "string",
  format: "go-duration",
  description: 'a Go duration such as "30m", "6h" or "1h30m"',
};
const port = {
  description: "a TCP port: an integer or numeric string from 0 to 65535",
  anyOf: [
    { type: "integer", minimum: 0, maximum: 65535 },
    { type: "string", pattern: "^[0-9]{1,5}$" },
  ],
};

const storageFields = {
  rootDirectory: { type: "string", minLength: 1 },
  dedupe: { type: "boolean" },
  gc: { type: "boolean" },
  gcDelay: duration,
  gcInterval: duration,
  commit: { type: "boolean" },
  uploadMaxAge: duration,
};

const stringList = { type: "array", items: { type: "string" } };
const actions = {
  type: "array",
  items: { enum: ["read", "create", "update", "delete", "detectManifestCollision"] },
};
const repoPolicy = {
  type: "object",
  properties: {
    policies: {
      type: "array",
      items: { type: "object", properties: { users: stringList, groups: stringList, actions } },
    },
    defaultPolicy: actions,
    anonymousPolicy: actions,
  },
};

const goRegexp = {
  type: "string",
  format: "regex",
  description: "a Go (RE2) regular expression, as zot reads it: no backreferences or lookaround",
};

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
            adminPolicy: { type: "object", properties: { users: stringList, groups: stringList, actions } },
            metrics: { type: "object" },
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
    extensions: { type: "object", properties: { sync: syncSchema } },
  },
} as const;
