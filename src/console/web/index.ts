/** The console's web pages (issue 20): a Fastify plugin for the admin listener. */
import { createHmac } from 'node:crypto';
export { consolePages, SECURITY_HEADERS, type ConsolePagesOptions } from './plugin.ts';
export { SESSION_COOKIE, IDLE_MS, MAX_AGE_MS } from './session.ts';

/**
 * The session signing key every broker process derives alike: from the server's private key (a
 * secret all workers load) and the admin token, so a new token or key ends every session.
 */
export function sessionKey(serverKeyPem: string, token: string | undefined): Buffer {
  return createHmac('sha256', serverKeyPem).update(`broker console sessions\0${token ?? ''}`).digest();
}
