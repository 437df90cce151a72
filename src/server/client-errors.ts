import type { IncomingMessage, Server } from "node:http";
import type { Socket } from "node:net";

/** Requests on a connection whose response has not ended yet (pipelined ones queue behind the first). */
const unanswered = new WeakMap<Socket, number>();
/** Connections that sent bytes Node could not parse while a response was under way: closed once it ends. */
const closeWhenAnswered = new WeakSet<Socket>();
/** The last request read on each connection, whose body may still be arriving. */
const latest = new WeakMap<Socket, IncomingMessage>();

function errorResponse(err: NodeJS.ErrnoException): string {
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const body = JSON.stringify({
    errors: [
      {
        code: tooLarge ? "SIZE_INVALID" : "UNSUPPORTED",
        message: tooLarge ? "request headers are too large (the limit is 16 KiB)" : "malformed HTTP request",
      },
    ],
  });
  return `HTTP/1.1 ${tooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * Answers a request Node could not parse with the spec's error JSON, but only on a connection with
 * no response under way: written behind a response (bytes pipelined after a blob GET), a 400 would
 * land in the middle of that response's body, which the client would take for blob content. There,
 * the responses under way are finished and the connection is closed after them.
 */
export function answerClientErrors(server: Server): void {
  server.on("request", (req, res) => {
    const socket = req.socket;
    latest.set(socket, req);
    unanswered.set(socket, (unanswered.get(socket) ?? 0) + 1);
    res.once("close", () => {
      const left = (unanswered.get(socket) ?? 1) - 1;
      if (left > 0) unanswered.set(socket, left);
      else {
        unanswered.delete(socket);
        if (closeWhenAnswered.has(socket)) socket.destroy();
      }
    });
  });
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // The error is in the body of the request being handled: most often the client went away
    // mid-upload (its FIN ends the body early; the socket stays half open). The body will never
    // come, so the connection goes and the handler sees the request aborted; waiting for its answer
    // would wait forever, holding the upload session busy.
    const req = latest.get(socket);
    if (req && !req.complete) {
      socket.destroy();
      return;
    }
    if (unanswered.has(socket)) {
      // The requests already read are answered in full; nothing more is read from this connection.
      closeWhenAnswered.add(socket);
      return;
    }
    socket.end(errorResponse(err));
  });
}
