/**
 * The broker's answer on a raw connection, as `doctor --client` reads it: one HTTP exchange, and
 * whether the broker refused the client certificate (a TLS alert, a silent close, or its HTTP
 * 495/496 answer with a reason).
 */
import type { TLSSocket } from 'node:tls';
import { fail, type Finding } from './finding.ts';

/** TLS alerts from the broker (or what stands in its place): a sentence and its fix each. */
export const ALERTS: Array<[RegExp, string, string | undefined]> = [
  [/CERTIFICATE_REQUIRED|certificate required/i, 'the broker requires a client certificate and none was sent', 'give --cert and --key (or --p12) with the identity the broker operator handed over'],
  [/ALERT_UNKNOWN_CA|unknown ca/i, 'the broker does not know the CA of your certificate (alert unknown_ca)', 'use the certificate this broker\'s operator issued; a certificate from another CA is refused'],
  [/CERTIFICATE_EXPIRED|certificate expired/i, 'the broker says a certificate has expired (alert certificate_expired): yours, or the broker\'s own CRL', 'check your certificate\'s end date above; if it is still valid, tell the broker operator (an expired CRL on the broker gives the same alert)'],
  [/CERTIFICATE_REVOKED|certificate revoked/i, 'the broker says your certificate is revoked (alert certificate_revoked)', 'ask the broker operator for a new certificate'],
  [/UNSUPPORTED_CERTIFICATE|unsupported certificate/i, 'the broker refuses your certificate\'s key usage (alert unsupported_certificate)', 'ask the broker operator for a client certificate (broker pki issue)'],
  [/BAD_CERTIFICATE|bad certificate/i, 'the broker could not use your certificate (alert bad_certificate)', 'ask the broker operator to check it (broker pki inspect)'],
  [/WRONG_VERSION_NUMBER|packet length too long|http request/i, 'the other side does not speak TLS on this port (plain HTTP, or another service)', 'check the URL\'s port'],
  [/PROTOCOL_VERSION|unsupported protocol|version too low/i, 'no TLS version in common (the broker accepts TLS 1.2 and 1.3)', undefined],
  [/HANDSHAKE_FAILURE|no shared cipher|sslv3 alert handshake failure/i, 'the handshake failed: no cipher or group in common, or the certificate was refused', undefined],
];

/** The broker's HTTP refusal of a certificate (495/496 with `{code, reason, hint}`), when the body is one. */
function refusalBody(body: string): { code?: string; reason?: string; hint?: string } | undefined {
  try {
    const j = JSON.parse(body) as Record<string, unknown>;
    if (typeof j !== 'object' || j === null) return undefined;
    const pick = (k: string) => (typeof j[k] === 'string' ? { [k]: j[k] as string } : {});
    return { ...pick('code'), ...pick('reason'), ...pick('hint') };
  } catch {
    return undefined;
  }
}

/** An HTTP answer read off a raw connection: its status and body, or why there was none. */
export interface Answer {
  status?: number;
  body?: string;
  error?: string;
}

/**
 * Writes `request` on `s` and reads one answer, then closes `s`. The answer is complete at its
 * Content-Length, or at the close; with `tunnel`, a 2xx head alone completes it (a CONNECT's 200).
 */
export function exchange(s: TLSSocket, request: string, ms: number, tunnel = false): Promise<Answer> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (r: Answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const parsed = () => {
      const text = data.toString('utf8');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      const end = text.indexOf('\r\n\r\n');
      if (!m || end < 0) return undefined;
      return { status: Number(m[1]), body: text.slice(end + 4), length: /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] };
    };
    const timer = setTimeout(() => finish({ ...(parsed() ?? { error: 'timeout' }) }), ms);
    s.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      const p = parsed();
      if (p && tunnel && p.status >= 200 && p.status < 300) finish({ status: p.status, body: '' });
      else if (p && p.length !== undefined && Buffer.byteLength(p.body) >= Number(p.length)) finish({ status: p.status, body: p.body });
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      const p = parsed();
      finish(p ? { status: p.status, body: p.body } : { error: e.code ?? e.message });
    });
    s.once('close', () => {
      const p = parsed();
      finish(p ? { status: p.status, body: p.body } : { error: data.length ? 'an answer that is not HTTP' : 'closed' });
    });
    s.write(request);
  });
}

/**
 * The broker's verdict on the client certificate when it refused it after the handshake: a TLS
 * alert, a silent close, or its HTTP 495/496 answer. Undefined when the certificate was admitted.
 */
export function certificateRefused(answer: Answer): Finding | undefined {
  if (answer.status === undefined) {
    const alert = ALERTS.find(([re]) => re.test(answer.error ?? ''));
    if (alert) return fail('certificate accepted', alert[1], alert[2]);
    const how = answer.error === 'ECONNRESET' ? 'reset the connection' : answer.error === 'closed' ? 'closed the connection' : `ended the connection (${answer.error})`;
    return fail('certificate accepted', `the broker refused your certificate after the handshake: it ${how} without an answer, so the reason is not known on this side`, 'ask the broker operator to look up your certificate in the broker\'s auth log (it names the reason), or to run broker pki inspect on it');
  }
  const st = answer.status;
  if (st !== 495 && st !== 496) return undefined;
  const body = refusalBody(answer.body ?? '');
  const code = body?.code;
  const reason = body?.reason ?? (st === 496 ? 'no certificate was sent' : 'the certificate failed verification');
  const brokerSide = /\bCRL\b|not your fault/i.test(reason) || /CRL/.test(code ?? '');
  return fail('certificate accepted', brokerSide
    ? `the broker refused your certificate because of a problem on the broker's side: ${reason} (${st}${code ? ` ${code}` : ''}); this is not your fault`
    : `the broker refused your certificate: ${reason} (${st}${code ? ` ${code}` : ''})`,
  brokerSide ? `tell the broker operator${body?.hint ? `: ${body.hint}` : ' (the broker\'s CRL must be renewed: broker pki crl)'}` : (body?.hint ?? 'ask the broker operator to look up your certificate in the broker\'s auth log'));
}

/** The `code` of a JSON error answer. */
export function codeOf(answer: Answer): string | undefined {
  return refusalBody(answer.body ?? '')?.code;
}
