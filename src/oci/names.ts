import { RegistryError } from "./errors.ts";

/** Repository name grammar of the distribution spec. */
const nameGrammar = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const tagGrammar = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** distribution caps a name at 255 characters; clients and file systems rely on that bound. */
export const maxNameLength = 255;

export function isValidName(name: string): boolean {
  return name.length <= maxNameLength && nameGrammar.test(name);
}

export function assertValidName(name: string): void {
  if (!isValidName(name)) {
    throw new RegistryError(
      "NAME_INVALID",
      `invalid repository name '${name.slice(0, 100)}': use lowercase letters, digits and separators (. _ __ -), path components joined by /, at most ${maxNameLength} characters`,
      { detail: { name: name.slice(0, 300) } },
    );
  }
}

export function isValidTag(tag: string): boolean {
  return tagGrammar.test(tag);
}
