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
  BRK_ERR_PKI_IDENTITY_EXISTS: { exit: 1, hint: 'this name already has a valid certificate; use "broker pki renew NAME", or revoke it first' },
  BRK_ERR_PKI_IDENTITY_NOT_FOUND: { exit: 1, hint: 'no certificate with that name or serial; see "broker pki list"' },
  BRK_ERR_PKI_ALREADY_REVOKED: { exit: 1, hint: 'that certificate is already revoked; nothing to do' },
  BRK_ERR_PKI_CSR_INVALID: { exit: 1, hint: 'give a PEM or DER PKCS#10 request whose signature verifies (e.g. from "openssl req -new")' },
  BRK_ERR_PKI_CERT_INVALID: { exit: 1, hint: 'give a PEM or DER X.509 certificate' },
  BRK_ERR_PKI_KEY_TYPE: { exit: 2, hint: 'use one of ec-p256, ec-p384, rsa-3072' },
  BRK_ERR_PKI_AUDIT_TAMPERED: { exit: 1, hint: 'the audit log was edited, truncated or lines were removed; compare it with your backups' },
  BRK_ERR_PKI_OUTPUT_EXISTS: { exit: 1, hint: 'the output files already exist; choose another --out DIR or pass --force to replace them' },
  BRK_ERR_PKI_CERT_REJECTED: { exit: 1, hint: 'this CA would refuse the certificate for the reasons given; issue or renew one with "broker pki issue/renew"' },
  BRK_ERR_PKI_SAN_INVALID: { exit: 2, hint: 'give --dns as a hostname (a leading "*." wildcard is allowed) and --ip as an IPv4 or IPv6 address' },
  BRK_ERR_PKI_CRYPTO: { exit: 1, hint: 'a cryptographic operation failed; the message has the cause' },
  BRK_ERR_PROXY_IDENTITY_VALUE: { exit: 1, hint: 'an identity value is not safe to send as a header; check the certificate subject and the identities rules' },
  BRK_ERR_NODE_VERSION: { exit: 1, hint: 'run through npm (npx broker, npm run ...) so the project\'s Node 24 is used, or install Node 24' },
  BRK_ERR_INTERNAL: { exit: 1, hint: 'an unexpected error; please report it with the log line' },
} as const satisfies Record<string, { exit: number; hint: string }>;

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
