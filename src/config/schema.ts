/**
 * The configuration schema: the one source of truth for the config's shape, types, defaults and
 * documentation. Unknown keys are errors. Durations are strings like "10s"; sizes like "1mb".
 */
import { Type, type Static } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;
const Duration = (def: string, description: string) => Type.String({ pattern: '^\\d{1,9}(ms|s|m|h|d)$', default: def, description });
// A bare number is a size too: YAML reads `bodySize: 512` as a number, and the README says 512 is a size.
const Size = (def: string, description: string) =>
  Type.Union([Type.String({ pattern: '^\\d{1,12}\\s*([kKmMgG][bB]|[bB])?$' }), Type.Integer({ minimum: 0, maximum: 999_999_999_999 })], { default: def, description });
const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' });
const Role = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' });
const Method = Type.Union(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].map((m) => Type.Literal(m)));

export const ListenSchema = Type.Object(
  {
    host: Type.String({ default: '0.0.0.0', description: 'address to listen on' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8443, description: 'TCP port (0 picks a free one)' }),
  },
  { ...strict, default: {} },
);

export const TlsSchema = Type.Object(
  {
    server: Type.Optional(Type.String({ description: 'server certificate NAME in the PKI store (made by "broker pki server NAME")' })),
    cert: Type.Optional(Type.String({ description: 'explicit server certificate chain file (PEM), instead of "server"' })),
    key: Type.Optional(Type.String({ description: 'explicit server key file (PEM)' })),
    clientCa: Type.Optional(Type.String({ description: 'explicit client CA bundle (PEM), instead of the store\'s chain' })),
    crl: Type.Optional(Type.String({ description: 'explicit CRL bundle (PEM, every CA level), instead of the store\'s' })),
    handshakeTimeout: Duration('10s', 'a TLS handshake not finished by then is dropped'),
    sessionTickets: Type.Boolean({ default: false, description: 'TLS session tickets (resumption). Off: a revoked client can never resume' }),
    minVersion: Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], { default: 'TLSv1.2' }),
    groups: Type.Array(Type.String(), { default: ['X25519MLKEM768', 'X25519', 'P-256', 'P-384'], minItems: 1, description: 'key exchange groups, most preferred first' }),
    refusal: Type.Union([Type.Literal('http'), Type.Literal('close')], {
      default: 'http',
      description: 'a presented client certificate that fails verification: "http" completes the handshake and answers the first request with 495 and the reason (nothing is forwarded), then closes; "close" drops the connection after the handshake, silently',
    }),
  },
  { ...strict, default: {} },
);

export const MatchSchema = Type.Object(
  {
    cn: Type.Optional(Type.String()),
    ou: Type.Optional(Type.String()),
    o: Type.Optional(Type.String()),
    uri: Type.Optional(Type.String()),
    dns: Type.Optional(Type.String()),
    email: Type.Optional(Type.String()),
    fingerprint: Type.Optional(Type.String({ pattern: '^([0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2}$' })),
    serial: Type.Optional(Type.String({ pattern: '^([0-9a-fA-F]{2}:?)+$' })),
  },
  { ...strict, minProperties: 1, description: 'every given field must match (globs: * and ?)' },
);

export const IdentityRuleSchema = Type.Object({ match: MatchSchema, roles: Type.Array(Role, { minItems: 1 }) }, strict);

export const UpstreamTlsSchema = Type.Object(
  {
    ca: Type.Optional(Type.String({ description: 'CA bundle (PEM) to verify the upstream; default: the system store' })),
    cert: Type.Optional(Type.String({ description: 'client certificate (PEM) for upstream mTLS' })),
    key: Type.Optional(Type.String({ description: 'client key (PEM) for upstream mTLS' })),
    servername: Type.Optional(Type.String({ description: 'SNI and name to verify, when it differs from the URL host' })),
  },
  strict,
);

/** A token bucket: `rate` requests per `per` sustained, `burst` at once. */
export const BucketSchema = Type.Object(
  {
    rate: Type.Integer({ minimum: 1, description: 'requests per period, sustained' }),
    per: Duration('1m', 'the period'),
    burst: Type.Optional(Type.Integer({ minimum: 1, description: 'requests at once (bucket size); default: rate' })),
  },
  strict,
);

const Cidr = Type.String({ description: 'an IPv4 or IPv6 address or CIDR block' });

/** Per-identity limits of the forward (egress) listener; `forward.limits` for everyone, `roles.NAME.forward` per role. */
const forwardLimitsFields = {
  tunnels: Type.Optional(Type.Object(BucketSchema.properties, { ...strict, description: 'new tunnels and forwarded requests per identity (429 BRK_ERR_RATE_LIMITED past it)' })),
  maxTunnels: Type.Optional(Type.Integer({ minimum: 1, description: 'tunnels and forwarded requests open at once per identity (429 BRK_ERR_CONCURRENCY_LIMITED past it)' })),
  quota: Type.Optional(
    Type.Object(
      {
        window: Duration('1d', 'the quota window; windows start at multiples of it since the Unix epoch (1d: 00:00 UTC)'),
        up: Type.Optional(Type.String({ pattern: '^\\d{1,12}\\s*([kKmMgG][bB]|[bB])?$', description: 'bytes an identity may send to destinations per window' })),
        down: Type.Optional(Type.String({ pattern: '^\\d{1,12}\\s*([kKmMgG][bB]|[bB])?$', description: 'bytes an identity may receive from destinations per window' })),
      },
      { ...strict, description: 'bytes per window in each direction: once spent, open tunnels of the identity are cut and new ones get 429 BRK_ERR_FORWARD_QUOTA until the window ends' },
    ),
  ),
};

export const RoleSchema = Type.Object(
  {
    rateLimit: Type.Optional(BucketSchema),
    maxConcurrent: Type.Optional(Type.Integer({ minimum: 1, description: 'in-flight requests per identity holding this role' })),
    allowIps: Type.Optional(Type.Array(Cidr, { description: 'only these client addresses, for identities with this role' })),
    denyIps: Type.Optional(Type.Array(Cidr, { description: 'never these client addresses, for identities with this role' })),
    forward: Type.Optional(Type.Object(forwardLimitsFields, { ...strict, description: 'forward listener limits for identities with this role, replacing forward.limits field by field; with several roles the strictest applies' })),
  },
  strict,
);

export const RateLimitSchema = Type.Object(
  {
    rate: Type.Integer({ minimum: 1, default: 600 }),
    per: Duration('1m', 'the period'),
    burst: Type.Integer({ minimum: 1, default: 60 }),
    store: Type.String({ default: 'memory', pattern: '^(memory|rediss?://.+)$', description: 'memory, or redis://HOST:PORT to share limits, bans and revocations between replicas' }),
    failOpen: Type.Boolean({ default: true, description: 'when the shared store is unreachable: true admits, false refuses with 503' }),
  },
  { ...strict, default: {} },
);

export const RedisSchema = Type.Object(
  {
    username: Type.Optional(Type.String()),
    passwordFile: Type.Optional(Type.String({ description: 'file whose first line is the Redis password (or set BROKER_REDIS_PASSWORD)' })),
    tls: Type.Optional(UpstreamTlsSchema),
    keyPrefix: Type.String({ default: 'broker:', description: 'prefix of every key the broker writes' }),
    commandTimeout: Duration('250ms', 'a Redis command slower than this counts as an outage'),
  },
  { ...strict, default: {} },
);

export const FiltersSchema = Type.Object(
  {
    allowIps: Type.Array(Cidr, { default: [], description: 'when not empty, only these client addresses may connect (checked at accept, before TLS)' }),
    denyIps: Type.Array(Cidr, { default: [], description: 'these client addresses are refused at accept' }),
    maxConnectionsPerIp: Type.Integer({ minimum: 1, default: 256, description: 'open connections from one address' }),
    connectionRate: Type.Object(
      { rate: Type.Integer({ minimum: 1, default: 50 }), per: Duration('1s', 'the period'), burst: Type.Integer({ minimum: 1, default: 100 }) },
      { ...strict, default: {}, description: 'new connections per address (token bucket), checked at accept' },
    ),
    maxRequestsPerConnection: Type.Integer({ minimum: 1, default: 1000, description: 'a keep-alive connection is closed after this many requests' }),
  },
  { ...strict, default: {} },
);

export const BansSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: true }),
    window: Duration('1m', 'the window failures are counted in'),
    failedHandshakes: Type.Integer({ minimum: 1, default: 10, description: 'failed handshakes from one address within the window that ban it' }),
    deniedRequests: Type.Integer({ minimum: 1, default: 30, description: '401/403 answers to one address within the window that ban it' }),
    duration: Duration('10m', 'how long a ban lasts'),
  },
  { ...strict, default: {} },
);

export const AUTH_METHODS = ['mtls', 'apiKey', 'jwt', 'basic'] as const;
const AuthMethod = Type.Union(AUTH_METHODS.map((m) => Type.Literal(m)));
/** The asymmetric JWS algorithms a token may use: never "none", never HS* (no HMAC/public-key confusion). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

/** The forms in which a route's upstream receives the verified identity (routes[].identity). */
export const IDENTITY_FORMATS = ['headers', 'xfcc', 'rfc9440', 'jwt'] as const;

export const RouteSchema = Type.Object(
  {
    name: Name,
    path: Type.String({ pattern: '^/', description: 'prefix on the normalised path, segment-aligned' }),
    upstream: Type.String({ description: 'http:// or https:// URL of the upstream' }),
    roles: Type.Array(Role, { default: [], description: 'roles allowed; none means nobody' }),
    methods: Type.Optional(Type.Array(Method, { minItems: 1 })),
    stripPath: Type.Boolean({ default: false, description: 'remove the route prefix before forwarding' }),
    websocket: Type.Boolean({ default: false }),
    timeout: Duration('30s', 'upstream response deadline (504 after)'),
    upstreamTls: Type.Optional(UpstreamTlsSchema),
    rateLimit: Type.Optional(BucketSchema),
    auth: Type.Array(AuthMethod, {
      default: ['mtls'],
      minItems: 1,
      uniqueItems: true,
      description: 'credentials the route requires, every one of them: mtls (client certificate), apiKey, jwt (OAuth2/OIDC bearer token), basic. Without mtls the route is served only on listenCertOptional',
    }),
    passCredentials: Type.Boolean({ default: false, description: 'forward the Authorization / API key header the broker checked (stripped by default)' }),
    identity: Type.Array(Type.Union(IDENTITY_FORMATS.map((f) => Type.Literal(f))), {
      default: ['headers', 'xfcc'],
      uniqueItems: true,
      description: 'how the upstream learns who called: headers (x-client-name, x-client-roles, …), xfcc (x-forwarded-client-cert), rfc9440 (Client-Cert and Client-Cert-Chain, the DER the client presented), jwt (a short-lived JWT signed by the broker, bound to the certificate; see "assertion"). Inbound copies of all of them are always stripped',
    }),
    audience: Type.Optional(Type.String({ minLength: 1, description: 'the "aud" of the jwt identity format; default: the route\'s name' })),
    keepServerHeader: Type.Boolean({ default: false, description: 'pass the upstream\'s Server header on to the client (dropped by default: it tells strangers what runs behind the broker)' }),
    methodOverride: Type.Boolean({
      default: false,
      description: 'forward X-HTTP-Method-Override, X-HTTP-Method and X-Method-Override (stripped by default); each named method is then judged by the route\'s methods and ACL like the request\'s own',
    }),
  },
  strict,
);

export const JwtSchema = Type.Object(
  {
    jwksUrl: Type.Optional(Type.String({ pattern: '^https?://', description: 'the identity provider\'s JWKS URL (https; http only on loopback)' })),
    jwksFile: Type.Optional(Type.String({ description: 'a JWKS JSON file, instead of jwksUrl (re-read on reload)' })),
    jwksCa: Type.Optional(Type.String({ description: 'CA bundle (PEM) to verify the JWKS server; default: the system store' })),
    issuer: Type.String({ minLength: 1, description: 'the exact "iss" tokens must carry' }),
    audience: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'tokens must name one of these in "aud"' }),
    algorithms: Type.Array(Type.Union(JWT_ALGORITHMS.map((a) => Type.Literal(a))), { default: ['RS256', 'PS256', 'ES256', 'EdDSA'], minItems: 1, uniqueItems: true }),
    clockSkew: Duration('30s', 'tolerance for exp / nbf / iat'),
    typ: Type.Optional(Type.String({ minLength: 1, description: 'the "typ" header tokens must carry, e.g. at+jwt (RFC 9068 access tokens), so an ID token cannot pass as an access token' })),
    nameClaim: Type.String({ default: 'sub', minLength: 1, description: 'claim holding the identity name (dotted path allowed)' }),
    rolesClaim: Type.String({ default: 'roles', minLength: 1, description: 'claim holding the roles: a list or a space-separated string (dotted path allowed)' }),
    cacheMaxAge: Duration('10m', 'JWKS kept this long before it is fetched again'),
    cooldown: Duration('30s', 'an unknown key id refetches the JWKS at most this often (key rotation)'),
    timeout: Duration('5s', 'JWKS fetch deadline'),
  },
  strict,
);

export const AuthSchema = Type.Object(
  {
    apiKeyHeader: Type.String({ default: 'x-api-key', pattern: '^[a-z0-9][a-z0-9-]{0,63}$', description: 'request header carrying an API key (made by "broker keys create")' }),
    basicRealm: Type.String({ default: 'broker', pattern: '^[\\x20-\\x21\\x23-\\x5b\\x5d-\\x7e]{1,64}$', description: 'realm named in WWW-Authenticate for Basic routes' }),
    cacheTtl: Duration('60s', 'a verified API key or Basic credential is remembered this long (a revocation is seen at the next reload)'),
    jwt: Type.Optional(JwtSchema),
  },
  { ...strict, default: {} },
);

export const LimitsSchema = Type.Object(
  {
    bodySize: Size('1mb', 'largest request body, proxied routes included (413)'),
    headerCount: Type.Integer({ minimum: 8, maximum: 500, default: 100, description: 'most request headers (431)' }),
    headerSize: Size('16kb', 'largest request head (431)'),
    urlLength: Type.Integer({ minimum: 64, maximum: 65536, default: 8192, description: 'longest request target (414)' }),
    upstreamConnections: Type.Integer({ minimum: 1, maximum: 65536, default: 128, description: 'connections in each route\'s upstream pool' }),
    upstreamShare: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.25, description: 'the most of a route\'s upstream connections one identity may hold at once (429 past it); fewer than 1/share busy identities can never take them all' }),
    websocket: Type.Object(
      {
        messageSize: Type.Optional(Type.String({ pattern: '^\\d{1,12}\\s*([kKmMgG][bB]|[bB])?$', description: 'largest WebSocket message, either direction (close 1009); default: limits.bodySize' })),
        buffer: Size('1mb', 'bytes the relay holds for a WebSocket peer that reads slower than the other side sends; past it, the sending side is paused until they drain'),
        perIdentity: Type.Integer({ minimum: 1, maximum: 100000, default: 16, description: 'open WebSockets per identity, per broker process (429 BRK_ERR_RATE_WEBSOCKETS beyond)' }),
      },
      { ...strict, default: {} },
    ),
  },
  { ...strict, default: {} },
);

export const TimeoutsSchema = Type.Object(
  {
    headers: Duration('10s', 'time to receive the request head (slowloris)'),
    request: Duration('60s', 'time to receive the whole request, body included, from its first byte (a hard deadline: 408, upstream exchange aborted, connection closed)'),
    responseWrite: Duration('30s', 'a client that reads none of its answer for this long is dropped and the upstream exchange aborted'),
    keepAlive: Duration('5s', 'idle keep-alive connections are closed after this'),
    shutdown: Duration('30s', 'on SIGTERM, how long running requests may finish before connections are cut'),
  },
  { ...strict, default: {} },
);

export const HttpSchema = Type.Object(
  {
    foldCase: Type.Boolean({ default: false, description: 'lower-case request paths (for case-insensitive upstreams)' }),
  },
  { ...strict, default: {} },
);

const LogTarget = (def: string, what: string) => Type.String({ default: def, minLength: 1, description: `${what}: stdout | stderr | off | a file path` });

export const LogSchema = Type.Object(
  {
    level: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
    auth: LogTarget('stdout', 'handshake outcomes'),
    access: LogTarget('stdout', 'one line per request'),
    error: LogTarget('stderr', 'upstream failures, internal errors, outages, alerts'),
    audit: LogTarget('stdout', 'reloads, admin actions, bans'),
    buffer: Size('0', 'file outputs: collect up to this many bytes before writing (0: write line by line); a crash loses at most this much'),
    flushInterval: Duration('1s', 'with buffer: what is collected is written at least this often (and at shutdown)'),
  },
  { ...strict, default: {} },
);

export const AdminSchema = Type.Object(
  {
    host: Type.String({ default: '127.0.0.1', description: 'the admin listener\'s address; beyond loopback it needs tokenFile' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 9901 }),
    enabled: Type.Boolean({ default: true }),
    tokenFile: Type.Optional(Type.String({ description: 'file whose first line is the bearer token the admin endpoints require (all but /healthz)' })),
    allowedHosts: Type.Array(Type.String({ pattern: '^[A-Za-z0-9._~-]{1,253}$' }), {
      default: [],
      description: 'host names the admin listener answers to besides IP addresses and localhost (a Host header naming anything else gets 421: DNS rebinding)',
    }),
    upstreamCheckTimeout: Duration('1s', 'how long /readyz waits for an upstream to accept TCP'),
    console: Type.Boolean({ default: true, description: 'serve the operator\'s console (/console/) and its JSON API (/api/console/*) on the admin listener, with the same token rules; false: 404' }),
    consolePassphraseFile: Type.Optional(
      Type.String({ description: 'file whose first line is the CA passphrase, so the console can revoke certificates (default: enrollment.passphraseFile; not needed for a store made with --no-passphrase)' }),
    ),
  },
  { ...strict, default: {} },
);

export const AssertionSchema = Type.Object(
  {
    issuer: Type.String({ default: 'broker', minLength: 1, description: 'the "iss" of the identity assertions (routes whose identity includes jwt)' }),
    header: Type.String({ default: 'x-client-jwt', pattern: '^[a-z0-9][a-z0-9-]{0,63}$', description: 'request header that carries the assertion to the upstream (inbound copies are stripped on every route)' }),
    ttl: Duration('60s', 'assertion lifetime (exp - iat); an assertion is reused for at most half of it'),
    jwksFile: Type.Optional(Type.String({ description: 'also write the public keys (JWKS) to this file, for upstreams that mount it; rewritten at every reload and key retirement' })),
  },
  { ...strict, default: {} },
);

export const TracingSchema = Type.Object(
  {
    otlp: Type.Optional(
      Type.Object(
        {
          endpoint: Type.String({ pattern: '^https?://', description: 'OTLP/HTTP traces URL of the collector, e.g. http://127.0.0.1:4318/v1/traces' }),
          headers: Type.Record(Type.String({ pattern: '^[A-Za-z0-9-]{1,64}$' }), Type.String(), { default: {}, description: 'extra headers for the collector (e.g. an API key)' }),
          timeout: Duration('10s', 'export deadline per batch'),
        },
        { ...strict, description: 'export a span per request (server span, and a client span to the upstream) to this collector; off when absent' },
      ),
    ),
    serviceName: Type.String({ default: 'broker', minLength: 1, description: 'service.name of the exported spans' }),
    sampleRatio: Type.Number({ minimum: 0, maximum: 1, default: 1, description: 'share of traces the broker starts that are sampled; a partner\'s traceparent decides for the traces it continues' }),
  },
  { ...strict, default: {} },
);

export const AlertsSchema = Type.Object(
  {
    webhook: Type.Optional(Type.String({ pattern: '^https?://', description: 'URL that receives each alert as a JSON POST' })),
    dedupWindow: Duration('10m', 'the same alert is raised once per window'),
    window: Duration('1m', 'the window the counting rules count in'),
    failedHandshakesPerIp: Type.Integer({ minimum: 1, default: 20 }),
    failedHandshakesTotal: Type.Integer({ minimum: 1, default: 200 }),
    rateLimitHits: Type.Integer({ minimum: 1, default: 50, description: '429s for one identity within the window' }),
    expiryWarning: Duration('14d', 'server, CA and client certificates expiring within this raise certificate_expiring (checked at start and hourly; CRLs have crlExpiry)'),
    crlExpiry: Duration('1d', 'a loaded CRL within this of its nextUpdate raises crl_expiring (checked at start, every minute and after every reload); keep it under the CRL lifetime minus the publishing interval'),
    clientExpiry: Type.Array(Type.String({ pattern: '^\\d{1,9}(ms|s|m|h|d)$' }), {
      default: ['30d', '7d', '1d'],
      maxItems: 16,
      description:
        'client certificates of the PKI store\'s inventory: one client_certificate_expiring alert per identity and threshold when its newest unrevoked certificate comes within that long of its end (once per serial and threshold in a process); [] turns them off',
    }),
    webhookTimeout: Duration('5s', 'per delivery attempt'),
  },
  { ...strict, default: {} },
);

export const EnrollmentSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description:
        'serve POST /.well-known/broker/enroll (one-time tokens of "broker pki invite", on listenCertOptional only) and POST /.well-known/broker/renew (over mTLS, main listener). The serving process then holds the issuing CA key, decrypted, in memory',
    }),
    certTtl: Duration('30d', 'lifetime of the certificates /renew issues (enrolments use the invitation\'s --cert-ttl, 30d by default); short, since partners renew by themselves'),
    renewAfter: Type.Number({ minimum: 0, maximum: 1, default: 0.66, description: 'fraction of a certificate\'s lifetime that must have passed before it may renew; 0 allows any time' }),
    passphraseFile: Type.Optional(Type.String({ description: 'file whose first line is the CA passphrase, to decrypt the issuing CA key (or set BROKER_CA_PASSPHRASE); not needed for a store made with --no-passphrase' })),
    rateLimit: Type.Object(
      {
        rate: Type.Integer({ minimum: 1, default: 10, description: 'enrolment and renewal attempts per client address, sustained' }),
        per: Duration('1m', 'the period'),
        burst: Type.Integer({ minimum: 1, default: 5, description: 'attempts at once' }),
      },
      { ...strict, default: {}, description: 'attempts per client address; refused attempts (bad, used, expired tokens) also count toward bans as denied requests' },
    ),
  },
  { ...strict, default: {} },
);

/** The credentials a forward rule may be used with (forward.rules[].auth): a certificate, or Proxy-Authorization. */
export const FORWARD_AUTH_METHODS = ['mtls', 'apiKey', 'basic'] as const;

export const ForwardRuleSchema = Type.Object(
  {
    roles: Type.Array(Role, { minItems: 1, description: 'callers holding any of these roles may reach the hosts below' }),
    hosts: Type.Array(Type.String({ pattern: '^(\\*\\.)?[A-Za-z0-9_.:-]{1,253}$' }), {
      minItems: 1,
      description: 'destination hosts: exact names (lower-cased, trailing dot ignored), "*.suffix" (one or more labels before the suffix, never the suffix itself), or IP literals (matched as addresses, only when the destination is written as an address)',
    }),
    ports: Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { default: [443], minItems: 1, description: 'destination ports allowed (CONNECT and absolute-form alike; plain http destinations need 80 listed)' }),
    allowPrivate: Type.Array(Cidr, { default: [], description: 'address ranges the SSRF guard would otherwise refuse (loopback, private, link-local, …) that these hosts may resolve to' }),
    auth: Type.Array(Type.Union(FORWARD_AUTH_METHODS.map((m) => Type.Literal(m))), {
      default: ['mtls'],
      minItems: 1,
      uniqueItems: true,
      description: 'credentials that may use this rule: mtls (client certificate), apiKey or basic (Proxy-Authorization, from "broker keys create"); any one of them. When a rule lists apiKey or basic, the forward listener asks for a client certificate without requiring one (fixed at start)',
    }),
  },
  strict,
);

export const ForwardSchema = Type.Object(
  {
    listen: Type.Object(
      { host: Type.String({ default: '0.0.0.0', description: 'address of the forward listener' }), port: Type.Integer({ minimum: 0, maximum: 65535, default: 3129, description: 'its TCP port (0 picks a free one)' }) },
      { ...strict, default: {} },
    ),
    rules: Type.Array(ForwardRuleSchema, { default: [], description: 'which destinations each role may reach; a destination no rule of the caller\'s roles names is refused (403)' }),
    connectTimeout: Duration('10s', 'resolving and connecting to a destination must finish within this (502 after)'),
    idleTimeout: Duration('5m', 'a tunnel or forwarded exchange with no bytes either way for this long is closed'),
    maxDuration: Duration('1h', 'a tunnel or forwarded exchange is closed after this long, busy or not'),
    limits: Type.Object(
      {
        tunnels: Type.Object(BucketSchema.properties, { ...strict, default: { rate: 10, per: '1s', burst: 20 }, description: 'new tunnels and forwarded requests per identity (429 BRK_ERR_RATE_LIMITED past it)' }),
        maxTunnels: Type.Integer({ minimum: 1, default: 32, description: 'tunnels and forwarded requests open at once per identity (429 BRK_ERR_CONCURRENCY_LIMITED past it)' }),
        quota: forwardLimitsFields.quota,
      },
      { ...strict, default: {}, description: 'per-identity limits, shared between replicas through rateLimit.store; roles.NAME.forward overrides them per role' },
    ),
  },
  { ...strict, description: 'the forward (egress) listener: CONNECT tunnels and absolute-form http requests to the destinations forward.rules allows, over TLS with the main listener\'s certificates and client-certificate policy (the certificate is optional when a rule accepts Proxy-Authorization); off when absent' },
);

export const ConfigSchema = Type.Object(
  {
    listen: ListenSchema,
    listenCertOptional: Type.Optional(
      Type.Object(
        { host: Type.String({ default: '0.0.0.0' }), port: Type.Integer({ minimum: 0, maximum: 65535, default: 8444 }) },
        { ...strict, description: 'a second TLS listener that asks for a client certificate without requiring one, for routes whose auth drops mtls' },
      ),
    ),
    auth: AuthSchema,
    pki: Type.Object({ dir: Type.String({ default: './pki' }) }, { ...strict, default: {} }),
    tls: TlsSchema,
    identities: Type.Array(IdentityRuleSchema, { default: [] }),
    routes: Type.Array(RouteSchema, { default: [] }),
    reload: Type.Object(
      {
        watch: Type.Boolean({ default: true, description: 'reload when the config file or the certificate files change' }),
        debounce: Duration('300ms', 'wait this long after the last change before reloading'),
      },
      { ...strict, default: {} },
    ),
    user: Type.Optional(Type.String({ minLength: 1, description: 'started as root (to bind a low port), switch to this user right after binding' })),
    group: Type.Optional(Type.String({ minLength: 1, description: 'and to this group (default: the user\'s own group name)' })),
    workers: Type.Integer({ minimum: 1, maximum: 256, default: 1, description: 'processes serving the listener (node:cluster); limits stay exact across them' }),
    rateLimit: RateLimitSchema,
    maxConcurrent: Type.Integer({ minimum: 1, default: 100, description: 'in-flight requests per identity, unless a role says otherwise' }),
    roles: Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' }), RoleSchema, { default: {} }),
    redis: RedisSchema,
    filters: FiltersSchema,
    bans: BansSchema,
    limits: LimitsSchema,
    timeouts: TimeoutsSchema,
    http: HttpSchema,
    log: LogSchema,
    admin: AdminSchema,
    alerts: AlertsSchema,
    assertion: AssertionSchema,
    tracing: TracingSchema,
    enrollment: EnrollmentSchema,
    forward: Type.Optional(ForwardSchema),
  },
  strict,
);

export type BrokerConfig = Static<typeof ConfigSchema>;
export type RouteConfig = Static<typeof RouteSchema>;
export type IdentityRule = Static<typeof IdentityRuleSchema>;
export type MatchRule = Static<typeof MatchSchema>;
export type BucketConfig = Static<typeof BucketSchema>;
export type RoleConfig = Static<typeof RoleSchema>;
export type AuthMethod = (typeof AUTH_METHODS)[number];
export type JwtConfig = Static<typeof JwtSchema>;
export type ForwardConfig = Static<typeof ForwardSchema>;
export type ForwardAuthMethod = (typeof FORWARD_AUTH_METHODS)[number];
export type IdentityFormat = (typeof IDENTITY_FORMATS)[number];
