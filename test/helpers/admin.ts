/**
 * The admin listener as a test sees it: plain HTTP to 127.0.0.1 on the port the broker bound, and
 * the Prometheus text of /metrics parsed into samples.
 */
import { request as httpRequestRaw, type IncomingHttpHeaders } from 'node:http';
import { collectResponse, type RunningBroker } from './broker.ts';

/** The admin listener's port (startBroker sets admin.port 0). */
export function adminPort(b: RunningBroker): number {
  const a = b.broker.admin?.server.address();
  if (!a || typeof a === 'string') throw new Error('the broker has no admin listener');
  return a.port;
}

export interface AdminResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): Record<string, unknown>;
}

/** One plain-HTTP GET on a fresh connection. */
export function httpGet(port: number, path: string, headers: Record<string, string> = {}): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequestRaw({ host: '127.0.0.1', port, path, headers, agent: false, timeout: 15_000 }, (res) => collectResponse(res, resolve, reject));
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * One plain-HTTP request on a fresh connection. State-changing admin requests need `X-Broker-Admin: 1`
 * (or the bearer token); `adminPost` sends it, as every caller in this repo does.
 */
export function httpRequest(port: number, o: { method: string; path: string; headers?: Record<string, string>; body?: string }): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequestRaw({ host: '127.0.0.1', port, path: o.path, method: o.method, headers: o.headers ?? {}, agent: false, timeout: 15_000 }, (res) => collectResponse(res, resolve, reject));
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** A state-changing admin request (POST), with the header that the admin requires of them. */
export function adminPost(port: number, path: string, headers: Record<string, string> = {}): Promise<AdminResponse> {
  return httpRequest(port, { method: 'POST', path, headers: { 'x-broker-admin': '1', ...headers } });
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  text: string;
  samples: Sample[];
  /** Metric family name → type, from the `# TYPE` lines. */
  types: Map<string, string>;
  /** The sum of the samples named `name` whose labels include `labels` (0 when there is none). */
  value(name: string, labels?: Record<string, string>): number;
  /** The samples named `name` whose labels include `labels`. */
  find(name: string, labels?: Record<string, string>): Sample[];
}

const unescape = (s: string) => s.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));

/** Parses the Prometheus text exposition format (what prom-client writes). */
export function parseMetrics(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1] as string, type[2] as string);
    if (line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = unescape(l[2] as string);
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  const find = (name: string, labels: Record<string, string> = {}) => samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return { text, samples, types, find, value: (name, labels) => find(name, labels).reduce((sum, s) => sum + s.value, 0) };
}

/** GET /metrics on the admin port, parsed; fails on anything but 200. */
export async function scrape(b: RunningBroker, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await httpGet(adminPort(b), '/metrics', headers);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${res.text}`);
  return parseMetrics(res.text);
}
