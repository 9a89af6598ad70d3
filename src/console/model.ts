/**
 * The operator's console (issue 20): what each view shows, as the JSON the admin API answers
 * (`GET /api/console/{partners,certificates,live,changes}`) and the HTML pages at /console/ render.
 * One source feeds both, so a page never shows what the API would not. Times are ISO 8601 strings.
 */

export interface CredentialView {
  kind: 'certificate' | 'apiKey' | 'basic';
  /** Certificate serial (hex) or key/credential id. */
  id: string;
  status: 'valid' | 'expired' | 'revoked';
  /** Certificates: notAfter; keys: their expiry when they have one. */
  notAfter: string | null;
  /** Certificates: SHA-256 fingerprint (hex, no colons). */
  fingerprint?: string;
}

export interface PartnerView {
  name: string;
  roles: string[];
  contact: string | null;
  credentials: CredentialView[];
  /** Last request, tunnel or handshake seen by this broker process (not persisted). */
  lastSeen: string | null;
  requests: { hour: number; day: number };
  refusals: { hour: number; day: number };
  /** The identity's own bucket now: tokens left of its burst (null: never used since start). */
  rateLimit: { limit: number; remaining: number } | null;
  openConnections: number;
}

export interface PartnersView {
  generatedAt: string;
  partners: PartnerView[];
}

export interface TimelineItem {
  kind: 'root' | 'intermediate' | 'server' | 'client' | 'crl';
  name: string;
  serial: string | null;
  notAfter: string;
  /** Retired by the next rotation (a previous CA still trusted during its overlap, and what it signed). */
  retiring: boolean;
}

export interface InvitationView {
  id: string;
  name: string;
  roles: string[];
  status: string;
  expiresAt: string;
  contact: string | null;
}

export interface CertificatesView {
  generatedAt: string;
  /** Soonest first. */
  timeline: TimelineItem[];
  invitations: InvitationView[];
}

export interface LivePoint {
  /** Start of the interval. */
  t: string;
  requestsPerSecond: number;
  errorsPerSecond: number;
  p50Ms: number | null;
  p99Ms: number | null;
  handshakesPerSecond: number;
}

export interface RefusalView {
  time: string;
  reqId: string | null;
  principal: string | null;
  remoteIp: string | null;
  code: string;
  reason: string;
  /** The certificate presented, when there was one. */
  certificate: { subject: string | null; serial: string | null; fingerprint: string | null } | null;
}

export interface BanView {
  key: string;
  until: string;
}

export interface LiveView {
  generatedAt: string;
  /** Oldest first, fixed intervals (`intervalSeconds`) over the last minutes. */
  intervalSeconds: number;
  series: LivePoint[];
  /** Newest first. */
  refusals: RefusalView[];
  bans: BanView[];
}

export interface ChangeView {
  time: string;
  /** Audit `op` (issue, revoke, rotate, …) or `reload`. */
  kind: string;
  actor: string | null;
  detail: string;
}

export interface ChangesView {
  generatedAt: string;
  /** The PKI audit log's hash chain, as `broker pki audit verify` checks it. */
  chain: { ok: boolean; lines: number; problem: string | null };
  /** Newest first. */
  changes: ChangeView[];
}

/** What an action did, for the page and the JSON answer. */
export interface ActionResult {
  ok: boolean;
  action: 'revoke-certificate' | 'revoke-credential' | 'lift-ban' | 'reload';
  target: string;
  message: string;
  /** When refused or failed: the BRK_ERR_* code (additive, set by src/console/source.ts). */
  code?: string;
}

/** The data behind the console, implemented in src/console/source.ts. */
export interface ConsoleSource {
  partners(): Promise<PartnersView>;
  certificates(): Promise<CertificatesView>;
  live(): Promise<LiveView>;
  changes(): Promise<ChangesView>;
  revokeCertificate(serial: string): Promise<ActionResult>;
  revokeCredential(id: string): Promise<ActionResult>;
  liftBan(key: string): Promise<ActionResult>;
  reload(): Promise<ActionResult>;
}
