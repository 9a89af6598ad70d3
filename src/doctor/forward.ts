/**
 * `broker doctor --client --forward`: the partner's path to the broker's forward (egress)
 * listener. The same walk as `doctor --client` up to TLS (src/doctor/client.ts), then an
 * origin-form `GET /`, which the forward listener refuses with 400 BRK_ERR_FORWARD_NOT_PROXY once
 * it has admitted the certificate; with a destination, one `CONNECT host:port` on a second
 * connection, closed as soon as the answer is in.
 */
import { certificateRefused, codeOf, exchange, type Answer } from './answer.ts';
import { reachBroker, type ClientDoctorOptions } from './client.ts';
import { fail, ok, type Finding } from './finding.ts';

/** The forward listener's port when the URL names none (forward.listen's default). */
export const FORWARD_PORT = 3129;

export interface ForwardDoctorOptions extends ClientDoctorOptions {
  /** `host:port` to ask a CONNECT for. */
  destination?: string | undefined;
}

/** Why the forward listener refused a CONNECT, and what to do, per code. */
const REFUSALS: Record<string, (dest: string) => [string, string]> = {
  BRK_ERR_FORWARD_DENIED: (d) => [`no forward rule of your roles names the host of ${d}`, 'ask the broker operator to add the host to forward.rules for one of your roles'],
  BRK_ERR_FORWARD_PORT: (d) => [`the host of ${d} is allowed for your roles, but not on this port`, 'ask the broker operator to list the port in that rule\'s ports (443 by default)'],
  BRK_ERR_FORWARD_PRIVATE: (d) => [`${d} is or resolves to a private or special address (loopback, private, link-local, metadata, …), which the broker refuses unless a rule allows that range`, 'if the destination is meant to be reached, ask the broker operator to list its range in the rule\'s allowPrivate; the access log names the range'],
  BRK_ERR_FORWARD_BAD_HOST: (d) => [`${d} is not a host name or IP address the broker accepts`, 'give --destination as HOST:PORT (a DNS name, an IPv4 address or a bracketed IPv6 address)'],
  BRK_ERR_FORWARD_RESOLVE: (d) => [`the broker could not resolve the host of ${d}`, 'check the name; if it is right, the broker host\'s DNS does not know it: tell the broker operator'],
  BRK_ERR_FORWARD_UPSTREAM: (d) => [`the broker may open ${d} for you, but could not connect to it (refused, unreachable or timed out)`, 'check that the destination runs and that the broker\'s host may reach it (its firewall); nothing to fix on the forward listener'],
  BRK_ERR_AUTH_REVOKED: () => ['your certificate was revoked while this connection was open', 'ask the broker operator for a new certificate'],
  BRK_ERR_AUTH_EXPIRED: () => ['your certificate expired while this connection was open', 'renew it (broker renew) and run doctor again'],
};

/** The reqId of a JSON error answer: the operator finds the access-log line by it. */
function reqIdOf(a: Answer): string | undefined {
  try {
    const id = (JSON.parse(a.body ?? '') as { reqId?: unknown }).reqId;
    return typeof id === 'string' && id !== '-' ? id : undefined;
  } catch {
    return undefined;
  }
}

/** The CONNECT's answer as a finding. */
function destinationFinding(dest: string, a: Answer): Finding {
  if (a.status === undefined) return fail('destination', `CONNECT ${dest}: the forward listener ended the connection without an answer (${a.error})`, 'run again; if it persists, ask the broker operator to look at the broker\'s error log');
  const st = a.status;
  if (st >= 200 && st < 300) return ok('destination', `CONNECT ${dest}: ${st}, the broker opens this tunnel for your identity (closed again at once)`);
  const code = codeOf(a);
  const reqId = reqIdOf(a);
  const ref = `${st}${code ? ` ${code}` : ''}${reqId ? `, reqId ${reqId}` : ''}`;
  const known = code ? REFUSALS[code] : undefined;
  if (known) {
    const [why, fix] = known(dest);
    return fail('destination', `CONNECT ${dest}: ${why} (${ref})`, fix);
  }
  if (st === 407) return fail('destination', `CONNECT ${dest}: the forward listener asks for proxy credentials (407${code ? ` ${code}` : ''})`, 'send Proxy-Authorization as the broker operator says, or use a client certificate that carries your roles');
  const refused = certificateRefused(a);
  if (refused) return { ...refused, check: 'destination' };
  if (st === 429) return fail('destination', `CONNECT ${dest}: a limit on the forward listener was reached (${ref})`, 'slow down; the Retry-After header says when to retry');
  return fail('destination', `CONNECT ${dest}: ${st} (${ref})`, 'ask the broker operator: the access log has the line with this reqId');
}

export async function doctorForward(o: ForwardDoctorOptions): Promise<Finding[]> {
  const ms = o.timeoutMs ?? 5_000;
  const out: Finding[] = [];
  const reached = await reachBroker(o, FORWARD_PORT, out);
  if (!reached) return out;
  const where = `${reached.host}:${reached.port}`;

  // 5. an origin-form request: the forward listener admits the certificate, then refuses the request as not a proxy request
  const answer = await exchange(reached.socket, `GET / HTTP/1.1\r\nHost: ${reached.authority}\r\nConnection: close\r\n\r\n`, ms);
  const refused = certificateRefused(answer);
  if (refused) return [...out, refused];
  const code = codeOf(answer);
  if (answer.status !== 400 || code !== 'BRK_ERR_FORWARD_NOT_PROXY') {
    return [...out, fail('forward listener', `${where} took your certificate but answered GET / with ${answer.status}${code ? ` ${code}` : ''}, not as the forward listener does (400 BRK_ERR_FORWARD_NOT_PROXY): this is another listener, most likely the broker's main one`, `check the port: the forward listener is forward.listen in the broker's config (port ${FORWARD_PORT} unless set); ask the broker operator whether it is enabled`)];
  }
  out.push(ok('certificate accepted', `the forward listener at ${where} admitted your certificate (GET / answered 400 BRK_ERR_FORWARD_NOT_PROXY, as for any request that is not a proxy request)`));
  if (o.destination === undefined) return out;

  // 6. CONNECT on a fresh connection (the 400 closed the first): the rules and the SSRF guard decide
  const again: Finding[] = [];
  const second = await reachBroker(o, FORWARD_PORT, again);
  if (!second) {
    const why = again.find((f) => f.status === 'fail');
    return [...out, fail('destination', `could not connect a second time to ask for ${o.destination}: ${why?.check}: ${why?.message}`, why?.fix)];
  }
  const tunnel = await exchange(second.socket, `CONNECT ${o.destination} HTTP/1.1\r\nHost: ${o.destination}\r\n\r\n`, ms, true);
  out.push(destinationFinding(o.destination, tunnel));
  return out;
}
