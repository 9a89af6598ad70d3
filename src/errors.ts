/**
 * Every BRK_ERR_* code, defined once. A code is never reused for another meaning.
 * The README's error table lists each code with how to fix it; test/unit/errors.test.ts keeps the two in sync.
 *
 * `exit` is the process exit code the CLI uses when this error ends a command:
 * 1 runtime failure, 2 usage or config error.
 */
export const ERRORS = {
  // usage
  BRK_ERR_USAGE: { exit: 2, hint: 'check the command line; run "broker help <command>"' },
  BRK_ERR_USAGE_TTL: { exit: 2, hint: 'give a duration like 15m, 12h, 90d or 1y' },
  BRK_ERR_USAGE_NAME: { exit: 2, hint: 'names are 1-64 characters: letters, digits, ".", "_" and "-", starting with a letter or digit' },
  BRK_ERR_USAGE_ROLE: { exit: 2, hint: 'roles are 1-64 characters: letters, digits, ".", "_", ":" and "-"' },
  BRK_ERR_USAGE_PASSPHRASE_REQUIRED: { exit: 2, hint: 'give --passphrase-file FILE or set BROKER_CA_PASSPHRASE (or --no-passphrase on init, not for production)' },
  BRK_ERR_USAGE_CONTACT: { exit: 2, hint: 'give --contact as one e-mail address, e.g. ops@partner.example' },
  BRK_ERR_USAGE_BUNDLE_URL: { exit: 2, hint: 'give --url as https://HOST:PORT, the address partners reach the broker at (no path, no credentials)' },
  BRK_ERR_USAGE_SECRET_FILE: { exit: 2, hint: 'point the option at a readable file holding the secret on its first line' },
  // PKI store
  BRK_ERR_PKI_CA_NOT_FOUND: { exit: 1, hint: 'run "broker pki init" first, or point --dir / BROKER_PKI_DIR at the store' },
  BRK_ERR_PKI_CA_EXISTS: { exit: 1, hint: 'a CA already lives here; use another --dir, or remove the folder yourself if you really mean to start over' },
  BRK_ERR_PKI_BAD_PASSPHRASE: { exit: 1, hint: 'the CA passphrase is wrong; check --passphrase-file or BROKER_CA_PASSPHRASE' },
  BRK_ERR_PKI_INVENTORY_CORRUPT: { exit: 1, hint: 'the inventory is not valid; restore inventory.json from a backup (nothing was changed)' },
  BRK_ERR_PKI_INVENTORY_MISSING: { exit: 1, hint: 'inventory.json is missing from the store; restore it from a backup (nothing was changed)' },
  BRK_ERR_PKI_FILE_READ: { exit: 1, hint: 'check that the file exists and that this user may read it' },
  BRK_ERR_PKI_FILE_WRITE: { exit: 1, hint: 'check free disk space and permissions on the store; nothing was changed' },
  BRK_ERR_PKI_LOCKED: { exit: 1, hint: 'another broker pki command holds the store lock; retry when it is done' },
  BRK_ERR_PKI_LOCK_LOST: { exit: 1, hint: 'this command lost the store lock (it was stalled past the lock\'s stale time, or the lock was removed) and stopped before changing anything; run it again' },
  BRK_ERR_PKI_IDENTITY_EXISTS: { exit: 1, hint: 'this name already has a valid certificate; use "broker pki renew NAME" (for a server certificate\'s names: "broker pki rotate server NAME --dns HOST --ip ADDR"), or revoke it first' },
  BRK_ERR_PKI_IDENTITY_NOT_FOUND: { exit: 1, hint: 'no certificate with that name or serial; see "broker pki list"' },
  BRK_ERR_PKI_ALREADY_REVOKED: { exit: 1, hint: 'that certificate is already revoked; nothing to do' },
  BRK_ERR_PKI_CRL_TOO_SHORT: { exit: 2, hint: 'give a CRL lifetime of 1h or more (e.g. 7d, republished daily), or pass --force if a shorter one is really meant' },
  BRK_ERR_PKI_CSR_INVALID: { exit: 1, hint: 'give a PEM or DER PKCS#10 request whose signature verifies (e.g. from "openssl req -new")' },
  BRK_ERR_PKI_CERT_INVALID: { exit: 1, hint: 'give a PEM or DER X.509 certificate' },
  BRK_ERR_PKI_KEY_TYPE: { exit: 2, hint: 'use one of ec-p256, ec-p384, rsa-3072' },
  BRK_ERR_PKI_AUDIT_TAMPERED: { exit: 1, hint: 'the audit log was edited, truncated or lines were removed; compare it with your backups' },
  BRK_ERR_PKI_AUDIT_INTERRUPTED: { exit: 1, hint: 'a change was cut off by a crash or kill, nothing was tampered with; run "broker pki audit recover" (or any store-changing command) to complete it' },
  BRK_ERR_PKI_OUTPUT_EXISTS: { exit: 1, hint: 'the output files already exist; choose another --out DIR or pass --force to replace them' },
  BRK_ERR_ASSERTION_KEY_MISSING: { exit: 2, hint: 'a route sends the jwt identity format but the store has no assertion signing key; run "broker pki rotate assertion-key" (stores made before identity assertions have none), or remove jwt from the route\'s identity' },
  BRK_ERR_ASSERTION_KEYS_CORRUPT: { exit: 1, hint: 'assertion/keys.json or an assertion key file is unreadable; restore them from a backup, or move the assertion folder aside and run "broker pki rotate assertion-key" to start over with a new key' },
  BRK_ERR_PKI_CERT_REJECTED: { exit: 1, hint: 'this CA would refuse the certificate for the reasons given; issue or renew one with "broker pki issue/renew"' },
  BRK_ERR_PKI_SAN_INVALID: { exit: 2, hint: 'give --dns as a hostname (a leading "*." wildcard is allowed) and --ip as an IPv4 or IPv6 address' },
  BRK_ERR_PKI_CRYPTO: { exit: 1, hint: 'a cryptographic operation failed; the message has the cause' },
  // the offline root (broker pki root)
  BRK_ERR_USAGE_ROOT_PASSPHRASE_REQUIRED: { exit: 2, hint: 'root operations need the root key\'s own passphrase: give --root-passphrase-file FILE or set BROKER_ROOT_CA_PASSPHRASE' },
  BRK_ERR_PKI_BAD_ROOT_PASSPHRASE: { exit: 1, hint: 'the root passphrase is wrong; check --root-passphrase-file or BROKER_ROOT_CA_PASSPHRASE (it is not the issuing CA\'s passphrase once the root has its own)' },
  BRK_ERR_PKI_ROOT_OFFLINE: { exit: 1, hint: 'the root key is not on this host ("broker pki root remove"); bring it back with "broker pki root import --from DIR" (the folder "pki root export" wrote), run the command, then export and remove it again' },
  BRK_ERR_PKI_ROOT_SHARED: { exit: 1, hint: 'the root key still shares the issuing CA\'s passphrase; run "broker pki root migrate --root-passphrase-file FILE" first' },
  BRK_ERR_PKI_ROOT_MIGRATED: { exit: 1, hint: 'the root key already has its own passphrase; nothing to migrate' },
  BRK_ERR_PKI_ROOT_EXPORT_INVALID: { exit: 1, hint: 'the folder does not hold this CA\'s root keys readable with the root passphrase; give the folder "broker pki root export --out DIR" wrote, and the root passphrase' },
  // API keys and Basic credentials (broker keys)
  BRK_ERR_KEYS_NOT_FOUND: { exit: 1, hint: 'no credential with that id or name; see "broker keys list"' },
  BRK_ERR_KEYS_ALREADY_REVOKED: { exit: 1, hint: 'that credential is already revoked; nothing to do' },
  BRK_ERR_KEYS_CORRUPT: { exit: 1, hint: 'keys.json in the store is not valid; restore it from a backup (nothing was changed)' },
  // enrolment invitations and the partner-side enroll/renew commands
  BRK_ERR_ENROLL_INVITATION_NOT_FOUND: { exit: 1, hint: 'no invitation with that id; see "broker pki invite --list"' },
  BRK_ERR_ENROLL_INVITATION_CLOSED: { exit: 1, hint: 'that invitation was already used, revoked or has expired; nothing to do (revoke the certificate it produced with "broker pki revoke NAME")' },
  BRK_ERR_ENROLL_INVITATIONS_CORRUPT: { exit: 1, hint: 'invitations.json in the store is not valid; restore it from a backup (nothing was changed)' },
  BRK_ERR_ENROLL_CA_MISMATCH: { exit: 1, hint: 'the broker at --url does not hold the CA the token pins: check the URL (and that nothing intercepts the connection), or ask the operator for a new token; nothing was sent' },
  BRK_ERR_ENROLL_CONNECT: { exit: 1, hint: 'the broker at --url could not be reached or its TLS certificate did not verify; check the URL and port (enrol on the certificate-optional listener, renew on the main one)' },
  BRK_ERR_ENROLL_NOT_ENABLED: { exit: 1, hint: 'the broker at --url does not serve /.well-known/broker/ (enrollment.enabled is off there, or this is not its certificate-optional listener for enroll / its main listener for renew); ask the operator' },
  BRK_ERR_ENROLL_REFUSED: { exit: 1, hint: 'the broker refused the request with an answer this client does not know; the message has the status and code, the broker\'s logs the reason' },
  BRK_ERR_ENROLL_FILES: { exit: 1, hint: 'check --cert, --key, --ca and --out: the files must be readable PEM and the folder writable; on a failed write the old files were left as they were' },
  // configuration
  BRK_ERR_CONFIG_READ: { exit: 2, hint: 'check the --config path and that the file is readable YAML or JSON' },
  BRK_ERR_CONFIG_INVALID: { exit: 2, hint: 'fix each "path: problem" listed; "broker config check --config FILE" re-checks without starting' },
  // serving
  BRK_ERR_TLS_MATERIAL: { exit: 1, hint: 'check the server certificate, key, client CA and CRL files (broker pki list; broker pki crl)' },
  BRK_ERR_TLS_CRL_ROLLBACK: { exit: 1, hint: 'an older CRL was put in place of the loaded one; publish a current one with "broker pki crl" (or copy the store\'s crl.pem again)' },
  BRK_ERR_LISTEN: { exit: 2, hint: 'the address is taken or not allowed; pick another listen.port/host or stop the other process' },
  // answered to HTTP clients (status, and the generic message the client sees; details go to the log)
  BRK_ERR_HTTP_BAD_PATH: { exit: 1, status: 400, public: 'malformed or ambiguous request path', hint: 'send a plain path: no encoded "/", "\\", ".", ";", control characters or invalid escapes' },
  BRK_ERR_HTTP_BAD_REQUEST: { exit: 1, status: 400, public: 'malformed request', hint: 'send one Host header, and no Transfer-Encoding other than chunked' },
  BRK_ERR_HTTP_BAD_HOST: { exit: 1, status: 400, public: 'malformed Host header', hint: 'send Host as host[:port]: a DNS name (letters, digits, "-", ".", "_", "~"), an IPv4 address or a bracketed IPv6 address, with an optional port' },
  BRK_ERR_HTTP_URI_TOO_LONG: { exit: 1, status: 414, public: 'request target too long', hint: 'shorten the URL, or raise limits.urlLength' },
  BRK_ERR_HTTP_HEADERS_TOO_LARGE: { exit: 1, status: 431, public: 'too many or too large request headers', hint: 'send fewer headers, or raise limits.headerCount / limits.headerSize' },
  BRK_ERR_HTTP_BODY_TOO_LARGE: { exit: 1, status: 413, public: 'request body too large', hint: 'send a smaller body, or raise limits.bodySize' },
  BRK_ERR_HTTP_REQUEST_TIMEOUT: { exit: 1, status: 408, public: 'request not received in time', hint: 'send the whole request (head and body) within timeouts.request; the connection is closed' },
  BRK_ERR_HTTP_RESPONSE_WRITE_TIMEOUT: { exit: 1, status: 408, public: 'answer not read in time', hint: 'read the answer: the client did not read for timeouts.responseWrite, so the broker dropped the connection (the answer was cut; no error body is sent)' },
  BRK_ERR_HTTP_NOT_FOUND: { exit: 1, status: 404, public: 'not found', hint: 'no route matches this path; check the routes in the config' },
  BRK_ERR_ACL_DENIED: { exit: 1, status: 403, public: 'access denied', hint: 'the identity holds none of the roles this route allows for this method; see the access log for the route' },
  BRK_ERR_TLS_CLIENT_CERT_REFUSED: { exit: 1, status: 495, public: 'client certificate refused', hint: 'the "reason" field says why (revoked, unknown CA, expired, not yet valid, wrong key usage, the broker\'s CRL expired); ask the broker operator for a valid certificate, or for a fresh CRL when the reason is the broker\'s' },
  BRK_ERR_AUTH_REVOKED: { exit: 1, status: 401, public: 'client certificate revoked', hint: 'this certificate was revoked; ask the broker operator for a new one' },
  BRK_ERR_AUTH_EXPIRED: { exit: 1, status: 401, public: 'client certificate expired', hint: 'the certificate this connection was opened with has expired; renew it (broker renew) and reconnect' },
  BRK_ERR_AUTH_NO_IDENTITY: { exit: 1, status: 403, public: 'access denied', hint: 'the client certificate does not name exactly one identity (one CN) with EKU clientAuth' },
  BRK_ERR_AUTH_REQUIRED: { exit: 1, status: 401, public: 'authentication required', hint: 'this route needs a credential the request did not carry: a client certificate, an x-api-key header, or Authorization: Bearer / Basic, as routes[].auth says' },
  BRK_ERR_AUTH_INVALID: { exit: 1, status: 401, public: 'authentication failed', hint: 'the credential is wrong, expired, revoked or was refused (token signature, issuer, audience, algorithm); the auth log has the reason' },
  BRK_ERR_AUTH_MISMATCH: { exit: 1, status: 401, public: 'authentication failed', hint: 'the credentials on this request (certificate, API key, token, Basic) belong to different identities; send credentials of one identity' },
  BRK_ERR_AUTH_UNAVAILABLE: { exit: 1, status: 503, public: 'service temporarily unavailable', hint: 'the broker could not fetch the signing keys (JWKS) to check the token; check auth.jwt.jwks and that the identity provider answers' },
  BRK_ERR_RATE_LIMITED: { exit: 1, status: 429, public: 'rate limit exceeded', hint: 'slow down: wait for Retry-After seconds; the limits are rateLimit, roles.*.rateLimit and routes[].rateLimit' },
  BRK_ERR_RATE_WEBSOCKETS: { exit: 1, status: 429, public: 'too many open WebSockets', hint: 'close WebSockets this identity no longer uses; the limit is limits.websocket.perIdentity (per broker process)' },
  BRK_ERR_CONCURRENCY_LIMITED: { exit: 1, status: 429, public: 'too many requests in flight', hint: 'wait for answers before sending more; the limit is maxConcurrent (or roles.*.maxConcurrent)' },
  BRK_ERR_RATE_UPSTREAM_SHARE: { exit: 1, status: 429, public: 'too many requests in flight to this upstream', hint: 'this identity holds its share of the route\'s upstream connections (limits.upstreamShare of limits.upstreamConnections); wait for answers (Retry-After) or send request bodies faster' },
  BRK_ERR_RATELIMIT_UNAVAILABLE: { exit: 1, status: 503, public: 'service temporarily unavailable', hint: 'the shared limit store (Redis) is unreachable and rateLimit.failOpen is false; check Redis' },
  BRK_ERR_FILTER_IP_DENIED: { exit: 1, status: 403, public: 'access denied', hint: 'the client address is not allowed for this identity\'s roles (roles.*.allowIps / denyIps)' },
  BRK_ERR_UPSTREAM_UNAVAILABLE: { exit: 1, status: 502, public: 'upstream unavailable', hint: 'the route\'s upstream refused or dropped the connection; check that it runs (broker doctor)' },
  BRK_ERR_UPSTREAM_TIMEOUT: { exit: 1, status: 504, public: 'upstream timed out', hint: 'the upstream did not answer within the route timeout; check it, or raise routes[].timeout' },
  BRK_ERR_HTTP_INTERNAL: { exit: 1, status: 500, public: 'internal error', hint: 'an unexpected error; the error log has the details' },
  BRK_ERR_ADMIN_UNAUTHORIZED: { exit: 1, status: 401, public: 'admin token required', hint: 'send Authorization: Bearer <the token in admin.tokenFile>' },
  BRK_ERR_ADMIN_HOST: { exit: 1, status: 421, public: 'unexpected Host for the admin listener', hint: 'address the admin listener by IP address or localhost, or add the name you use to admin.allowedHosts (other names are refused against DNS rebinding)' },
  BRK_ERR_ADMIN_CROSS_SITE: { exit: 1, status: 403, public: 'admin action refused', hint: 'send state-changing admin requests (POST /reload, …) with the header X-Broker-Admin: 1 or the admin bearer token, and without a foreign Origin (browsers on other sites are refused)' },
  BRK_ERR_ADMIN_NOT_LOOPBACK: { exit: 1, status: 403, public: 'admin listener reached beyond loopback', hint: 'without admin.tokenFile the admin listener answers on loopback addresses only; set admin.tokenFile or bind admin.host to 127.0.0.1' },
  BRK_ERR_ADMIN_METRICS_UNAVAILABLE: { exit: 1, status: 503, public: 'metrics unavailable', hint: 'with --workers, a scrape adds up every worker\'s metrics and one worker did not answer within 5 s (starting, or stuck): scrape again; if it keeps failing a worker is stuck: restart the broker' },
  // the operator's console (/console/ on the admin listener, src/console/web)
  BRK_ERR_CONSOLE_LOGIN: { exit: 1, status: 401, public: 'wrong admin token', hint: 'give the first line of the file admin.tokenFile names on the console\'s login page; failed logins are in the audit log' },
  BRK_ERR_CONSOLE_SESSION: { exit: 1, status: 403, public: 'console session missing or expired', hint: 'log in again at /console/ (a session ends after 30 minutes unused, 8 hours after login, or when the broker restarts with another admin token or server key)' },
  BRK_ERR_CONSOLE_CSRF: { exit: 1, status: 403, public: 'console form token invalid', hint: 'send console actions from the console\'s own confirmation page: its hidden form token belongs to your session (reload the page after logging in again)' },
  BRK_ERR_CONSOLE_BAD_REQUEST: { exit: 1, status: 400, public: 'malformed console request', hint: 'console actions take a form (application/x-www-form-urlencoded) from the console\'s confirmation page, or on the API a JSON body: {"serial": "<hex>"} for revoke-certificate, {"id": "<key id>"} for revoke-credential, {"key": "<ban key>"} for lift-ban, {} for reload' },
  BRK_ERR_CONSOLE_NOT_FOUND: { exit: 1, status: 404, public: 'nothing to act on', hint: 'no certificate, credential or ban with that serial, id or key (it may be revoked or lifted already); go back to its console page and reload it' },
  BRK_ERR_CONSOLE_REVOKE_DISABLED: { exit: 1, status: 409, public: 'revoking certificates from the console is not enabled', hint: 'the CA key is encrypted and the broker has no passphrase for it: set admin.consolePassphraseFile (or enrollment.passphraseFile) to a file whose first line is the CA passphrase, or revoke with "broker pki revoke" and reload' },
  BRK_ERR_CONSOLE_ACTION_FAILED: { exit: 1, status: 500, public: 'console action failed', hint: 'the action could not be completed; the message and the error log say why (a refused reload keeps the previous configuration; see its problems)' },
  // enrolment and renewal endpoints (/.well-known/broker/*, enrollment.enabled)
  BRK_ERR_ENROLL_TOKEN_INVALID: { exit: 1, status: 403, public: 'enrolment token invalid', hint: 'the token is not one the broker issued (mistyped, truncated or altered); copy it again exactly, or ask the operator for a new one (broker pki invite)' },
  BRK_ERR_ENROLL_TOKEN_EXPIRED: { exit: 1, status: 403, public: 'enrolment token expired', hint: 'the invitation expired before it was used; ask the operator for a new one (broker pki invite NAME --expires …)' },
  BRK_ERR_ENROLL_TOKEN_USED: { exit: 1, status: 403, public: 'enrolment token already used', hint: 'a token enrols once; if that was not you, tell the operator (the certificate it produced can be revoked), else use the certificate you got' },
  BRK_ERR_ENROLL_TOKEN_REVOKED: { exit: 1, status: 403, public: 'enrolment token revoked', hint: 'the operator withdrew this invitation; ask them for a new one' },
  BRK_ERR_ENROLL_CSR_INVALID: { exit: 1, status: 400, public: 'certificate request invalid', hint: 'send JSON with "csr": a PEM PKCS#10 request whose signature verifies, with an EC P-256/P-384 or RSA ≥ 2048 key (broker enroll and broker renew do this)' },
  BRK_ERR_ENROLL_BAD_REQUEST: { exit: 1, status: 400, public: 'malformed enrolment request', hint: 'GET /.well-known/broker/ca; POST /.well-known/broker/enroll or /renew with a JSON body (Content-Type: application/json, at most 64 KiB)' },
  BRK_ERR_ENROLL_LISTENER: { exit: 1, status: 403, public: 'not served on this listener', hint: 'enrol on the certificate-optional listener (listenCertOptional) without a client certificate; renew with your current client certificate' },
  BRK_ERR_ENROLL_CERT_UNKNOWN: { exit: 1, status: 403, public: 'certificate cannot be renewed', hint: 'only certificates this broker\'s CA store issued can renew, and only before they expire and unless revoked; ask the operator for a new invitation' },
  BRK_ERR_ENROLL_TOO_EARLY: { exit: 1, status: 409, public: 'too early to renew', hint: 'renewal opens once enrollment.renewAfter of the certificate\'s lifetime has passed; Retry-After (and broker renew\'s message) says when; retry then (a daily cron or timer does this by itself)' },
  BRK_ERR_ENROLL_RATE_LIMITED: { exit: 1, status: 429, public: 'too many enrolment attempts', hint: 'wait for Retry-After seconds; enrolment attempts per client address are limited by enrollment.rateLimit' },
  BRK_ERR_ENROLL_UNAVAILABLE: { exit: 1, status: 503, public: 'enrolment temporarily unavailable', hint: 'the broker could not change its CA store (locked by a pki command, or a write failed); retry in a moment; the error log has the details' },
  // broker connect (the partner-side forwarder)
  BRK_ERR_CONNECT_URL: { exit: 2, hint: 'give --url as https://HOST[:PORT][/base] and --via as http://[USER:PASS@]HOST:PORT (proxy credentials: --via-auth-file or BROKER_PROXY_AUTH as USER:PASS)' },
  BRK_ERR_CONNECT_LISTEN_REMOTE: { exit: 2, hint: 'listen on a loopback address (127.0.0.1, ::1, localhost): anyone who reaches a network listener uses your certificate; --allow-remote only behind your own access control' },
  BRK_ERR_CONNECT_CERT: { exit: 1, hint: 'check that --cert, --key and --ca are readable PEM files and that the key belongs to the certificate (broker pki inspect FILE)' },
  BRK_ERR_CONNECT_UPSTREAM: { exit: 1, status: 502, public: 'the broker could not be reached', hint: 'the broker or the --via proxy refused or dropped the connection (the message says which); check --url, --via and its credentials, and the certificate (broker pki inspect)' },
  BRK_ERR_CONNECT_NOT_PROXY: { exit: 1, status: 400, public: 'not a proxy request', hint: 'this "broker connect --forward" port is an HTTP proxy: set HTTPS_PROXY / HTTP_PROXY (curl: https_proxy / http_proxy) to http://HOST:PORT of it instead of sending requests to it directly; for origin-form requests to the broker\'s routes run "broker connect" without --forward' },
  BRK_ERR_PROXY_IDENTITY_VALUE: { exit: 1, status: 400, public: 'identity cannot be forwarded', hint: 'an identity value (name, role, key id, certificate subject or URI) has a comma, space, control or non-ASCII character and is not safe to send as a header; the operator fixes the certificate or the identities rules' },
  // forward proxy: destination checks (the SSRF guard, src/forward/destination.ts)
  BRK_ERR_FORWARD_BAD_HOST: { exit: 1, status: 400, public: 'malformed destination host', hint: 'give the destination as a DNS name (letters, digits, "-", "_", dot-separated labels, the last one not numeric), an IPv4 address or a bracketed IPv6 address without a zone id' },
  BRK_ERR_FORWARD_PRIVATE: { exit: 1, status: 403, public: 'destination not allowed', hint: 'the destination is or resolves to a private or special address (loopback, private, link-local, metadata, CGNAT, ULA, multicast, reserved; the log names the range); a forward rule\'s allowPrivate must name that range for it to be reached' },
  BRK_ERR_FORWARD_RESOLVE: { exit: 1, status: 502, public: 'destination could not be resolved', hint: 'the broker could not resolve the destination name (no such name, no address, or the lookup timed out); check the name and the broker host\'s DNS' },
  // forward proxy: the listener's own refusals (src/forward/listener.ts)
  BRK_ERR_FORWARD_DENIED: { exit: 1, status: 403, public: 'destination not allowed', hint: 'no forward.rules entry of your roles names this destination host; ask the operator to add it (the access log has the host and your roles)' },
  BRK_ERR_FORWARD_PORT: { exit: 1, status: 403, public: 'destination port not allowed', hint: 'the host is allowed for your roles, but not on this port; forward.rules[].ports lists the ports (443 by default; plain http needs 80 listed)' },
  BRK_ERR_FORWARD_NOT_PROXY: { exit: 1, status: 400, public: 'not a proxy request', hint: 'the forward listener takes CONNECT host:port (tunnels, for https) and absolute-form http://host/path requests only; configure it as your HTTP(S) proxy (curl --proxy https://broker:PORT) rather than sending requests to it directly' },
  BRK_ERR_FORWARD_RATE_LIMITED: { exit: 1, status: 429, public: 'too many new tunnels', hint: 'open tunnels and forwarded requests more slowly (wait Retry-After seconds), or reuse a tunnel; the limit is forward.limits.tunnels (or roles.*.forward.tunnels)' },
  BRK_ERR_FORWARD_TUNNELS: { exit: 1, status: 429, public: 'too many open tunnels', hint: 'close tunnels this identity no longer uses before opening more; the limit is forward.limits.maxTunnels (or roles.*.forward.maxTunnels)' },
  BRK_ERR_FORWARD_QUOTA: { exit: 1, status: 429, public: 'traffic quota spent', hint: 'this identity sent or received its forward.limits.quota (or roles.*.forward.quota) for the current window; wait for the window to end (Retry-After) or ask the operator for a larger quota' },
  BRK_ERR_FORWARD_UPSTREAM: { exit: 1, status: 502, public: 'destination unreachable', hint: 'the broker could not connect to the destination it checked within forward.connectTimeout (refused, unreachable or timed out), or the destination dropped the exchange; check that it runs' },
  BRK_ERR_FORWARD_AUTH_REQUIRED: { exit: 1, status: 407, public: 'proxy authentication required', hint: 'the forward listener needs a client certificate, or Proxy-Authorization with a credential from "broker keys create" (Basic name:password, Basic name:API-key, or Bearer API-key) on a rule whose auth lists apiKey or basic; curl: --proxy-user NAME:SECRET' },
  BRK_ERR_FORWARD_AUTH_INVALID: { exit: 1, status: 407, public: 'proxy authentication failed', hint: 'the Proxy-Authorization credential is wrong, unknown, expired, revoked, malformed or repeated, or its user name is not the identity of the API key; the auth log has the reason (ask the operator for a new credential: broker keys create)' },
  BRK_ERR_DOCTOR_PROBLEMS: { exit: 3, hint: 'each FAIL line above says what to do' },
  BRK_ERR_NODE_VERSION: { exit: 1, hint: 'use the installed "broker" command (or npx broker / npm run in a clone), which runs on the Node 24 the package brings; reinstall it with install scripts allowed if it cannot, or install Node 24' },
  BRK_ERR_INTERNAL: { exit: 1, hint: 'an unexpected error; please report it with the log line' },
} as const satisfies Record<string, { exit: number; hint: string; status?: number; public?: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BrokerError';
    this.code = code;
    this.hint = options?.hint ?? ERRORS[code].hint;
    this.exitCode = ERRORS[code].exit;
  }
}

export function isBrokerError(err: unknown, code?: ErrorCode): err is BrokerError {
  return err instanceof BrokerError && (code === undefined || err.code === code);
}

/** One line for a terminal: `error CODE: message (hint)`. */
export function formatError(err: BrokerError): string {
  return `error ${err.code}: ${err.message} (${err.hint})`;
}

export type HttpErrorCode = { [K in ErrorCode]: (typeof ERRORS)[K] extends { status: number } ? K : never }[ErrorCode];

/** The body answered to an HTTP client: generic, with the request id to quote to the operator. */
export function httpErrorBody(code: HttpErrorCode, reqId: string): { statusCode: number; code: HttpErrorCode; message: string; reqId: string } {
  const e = ERRORS[code];
  return { statusCode: e.status, code, message: e.public, reqId };
}
