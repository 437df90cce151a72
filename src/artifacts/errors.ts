/**
 * A request the artifact file service cannot answer with a file. The status is what the client
 * gets; the message is plain text, with nothing in it about the server or its storage.
 */
export class ArtifactError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ArtifactError";
  }
}

export const notFound = (): ArtifactError => new ArtifactError(404, "Not Found");
