/**
 * What the request path reports, as named diagnostics channels (as undici does): the path
 * publishes plain objects and does not know who listens; metrics and alerts subscribe. Publishing
 * to a channel nobody subscribes to costs next to nothing.
 */
import { channel } from 'node:diagnostics_channel';

export interface HandshakeEvent {
  outcome: 'ok' | 'refused';
  reason?: string;
  remoteIp?: string | undefined;
  principal?: string;
  serial?: string;
  /** The presented certificate's subject and SHA-256 fingerprint (hex), when a refused client sent one. */
  subject?: string;
  fingerprint?: string;
}

/** A credential checked on a request (API key, bearer token, Basic; certificates are handshakes). */
export interface CredentialEvent {
  method: string;
  outcome: 'ok' | 'refused';
  reason?: string;
  remoteIp?: string | undefined;
  principal?: string;
}

export interface RequestEvent {
  route: string | null;
  /** The role that granted access, or '' when refused before that. */
  role: string;
  principal: string | null;
  status: number;
  code?: string;
  durationMs: number;
  upstreamMs?: number;
  remoteIp?: string | undefined;
  /** The request id (access log `reqId`). */
  reqId?: string;
  /** The client certificate of the connection, when there is one (the Principal itself: read, do not keep). */
  certificate?: { readonly subject: string; readonly serial: string; readonly fingerprint: string };
}

export interface RejectEvent {
  /** accept:<reason>, rate_limit, concurrency, ip_filter, body_too_large, headers_too_large, bad_path, … */
  kind: string;
  remoteIp?: string | undefined;
  principal?: string;
}

export interface BanEvent {
  remoteIp: string;
  reason: string;
  durationMs: number;
}

export interface StoreEvent {
  outcome: 'down' | 'up' | 'error';
}

export interface ConnectionEvent {
  delta: 1 | -1;
}

/** A forward (egress) tunnel or request, when it is over or refused. */
export interface ForwardEvent {
  principal: string | null;
  outcome: 'ok' | 'refused' | 'failed';
  code?: string | undefined;
  /** How an established exchange ended (closed, idle, max duration, error, upload/download quota spent). */
  end?: string | undefined;
  bytesUp: number;
  bytesDown: number;
  remoteIp?: string | undefined;
}

/** A reload's outcome (src/lifecycle/reload.ts); a refused one says why. */
export interface ReloadEvent {
  outcome: 'ok' | 'failed';
  /** What asked for it: sighup, watch, admin, api, … */
  trigger?: string;
  code?: string | undefined;
  problems?: string[];
}

export const channels = {
  handshake: channel('broker:handshake'),
  credential: channel('broker:credential'),
  request: channel('broker:request'),
  reject: channel('broker:reject'),
  ban: channel('broker:ban'),
  store: channel('broker:store'),
  connection: channel('broker:connection'),
  reload: channel('broker:reload'),
  forward: channel('broker:forward'),
} as const;

/** Subscribes each listener to its channel; returns what unsubscribes them all (metrics, alerts, the console). */
export function listen(listeners: Partial<Record<keyof typeof channels, (message: unknown) => void>>): () => void {
  const pairs = Object.entries(listeners) as Array<[keyof typeof channels, (message: unknown) => void]>;
  for (const [name, fn] of pairs) channels[name].subscribe(fn);
  return () => {
    for (const [name, fn] of pairs) channels[name].unsubscribe(fn);
  };
}
