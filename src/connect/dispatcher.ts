/**
 * The connection pool to the broker: an undici Agent (keep-alive, one pool per origin) whose TLS
 * connections present the partner's certificate, or, with --via, a ProxyAgent that opens each
 * connection as a CONNECT tunnel through the proxy and runs the same mutual TLS inside it.
 * A new certificate means a new dispatcher: TLS options are fixed per connection.
 */
import { Agent, ProxyAgent, type Dispatcher } from 'undici';
import type { ClientTls } from './client-tls.ts';
import type { Via } from './options.ts';

export function buildDispatcher(tls: ClientTls, via?: Via): Dispatcher {
  const connect = { cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca }) };
  if (!via) return new Agent({ connect });
  return new ProxyAgent({ uri: via.uri, ...(via.token ? { token: via.token } : {}), requestTls: connect });
}
