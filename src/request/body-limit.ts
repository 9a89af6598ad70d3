/**
 * A byte counter for request bodies that stream to an upstream (Fastify's bodyLimit does not see
 * them). Past the limit it fails the stream; the proxy then answers 413 instead of 502.
 */
import { Transform, type TransformCallback } from 'node:stream';

export class BodyTooLargeError extends Error {
  readonly code = 'BRK_ERR_HTTP_BODY_TOO_LARGE';
  constructor(limit: number) {
    super(`request body over ${limit} bytes`);
  }
}

export class BodyLimiter extends Transform {
  readonly #limit: number;
  readonly #sink: { bytesIn: number } | undefined;
  #seen = 0;
  exceeded = false;

  /** `sink.bytesIn` follows the count (the request's notes, for the access log). */
  constructor(limit: number, sink?: { bytesIn: number }) {
    super();
    this.#limit = limit;
    this.#sink = sink;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#sink !== undefined) this.#sink.bytesIn = this.#seen;
    if (this.#seen > this.#limit) {
      this.exceeded = true;
      cb(new BodyTooLargeError(this.#limit));
      return;
    }
    cb(null, chunk);
  }

  get bytes(): number {
    return this.#seen;
  }
}
