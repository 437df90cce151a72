/** A parsed JSON object, as the config checks walk it before the schema's types apply. */
export type Json = Record<string, unknown>;

export const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
