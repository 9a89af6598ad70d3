/**
 * A connection's id: what joins its handshake's auth line to the access lines of the requests it
 * carried. `<process>-<n>`: 8 random hex digits drawn when the process starts (so that replicas
 * and workers do not collide) and a counter in base 36. Assigned on first use and kept on the socket.
 */
import { randomBytes } from 'node:crypto';

const kConnectionId = Symbol('broker.connectionId');
const PROCESS = randomBytes(4).toString('hex');
let next = 0;

export function connectionId(socket: object): string {
  const s = socket as { [kConnectionId]?: string };
  return (s[kConnectionId] ??= `${PROCESS}-${(next++).toString(36)}`);
}
