/**
 * Everything with an end date worth watching: the server certificate, the CA certificates in the
 * client CA bundle, the CRLs' nextUpdate, and (when the broker serves from its own PKI store)
 * every valid client certificate in the inventory. Read when metrics are scraped or alerts check.
 */
import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { BrokerConfig } from '../config/index.ts';
import { storeLayout } from '../pki/layout.ts';
import type { TlsMaterial } from '../tls/material.ts';

export interface ExpiryItem {
  kind: 'server' | 'ca' | 'crl' | 'client';
  name: string;
  notAfter: Date;
}

export function expirySource(c: BrokerConfig, material: () => TlsMaterial): () => ExpiryItem[] {
  const inventory = storeLayout(c.pki.dir).inventory;
  return () => {
    const m = material();
    const items: ExpiryItem[] = [{ kind: 'server', name: c.tls.server ?? m.server.subject, notAfter: m.server.notAfter }];
    for (const block of m.ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
      const ca = new X509Certificate(block);
      items.push({ kind: 'ca', name: ca.subject.replace(/\n/g, ','), notAfter: new Date(ca.validTo) });
    }
    if (m.crlNextUpdate) items.push({ kind: 'crl', name: 'crl', notAfter: m.crlNextUpdate });
    if (!c.tls.clientCa && existsSync(inventory)) {
      try {
        const inv = JSON.parse(readFileSync(inventory, 'utf8')) as { certs?: Array<{ name: string; type: string; notAfter: string; revokedAt?: string }> };
        const now = Date.now();
        const latest = new Map<string, Date>();
        for (const cert of inv.certs ?? []) {
          if (cert.type !== 'client' || cert.revokedAt) continue;
          const end = new Date(cert.notAfter);
          if (end.getTime() <= now - 86_400_000) continue;
          const prev = latest.get(cert.name);
          if (!prev || end > prev) latest.set(cert.name, end);
        }
        for (const [name, notAfter] of latest) items.push({ kind: 'client', name, notAfter });
      } catch {
        // an unreadable inventory is the CA's business (broker pki reports it); metrics go on without it
      }
    }
    return items;
  };
}

/** The newest unrevoked client certificate of one identity, as the expiry notices and the metric see it. */
export interface ClientCertificate {
  identity: string;
  serial: string;
  notAfter: Date;
  roles: string[];
  contact?: string;
}

/**
 * Each identity's newest unrevoked, unexpired client certificate in the store's inventory
 * (`pki.dir`): an older certificate of a renewed identity is not a concern. Empty when the broker
 * verifies clients against an explicit `tls.clientCa` (the inventory is not its CA's) or the store
 * has no inventory; an unreadable inventory reads as empty too (`broker pki` reports it).
 */
export function clientCertificates(c: BrokerConfig, now = Date.now()): ClientCertificate[] {
  const file = storeLayout(c.pki.dir).inventory;
  if (c.tls.clientCa || !existsSync(file)) return [];
  let certs: Array<{ name: string; type: string; serial: string; notAfter: string; revokedAt?: string; roles?: string[]; contact?: string }>;
  try {
    certs = (JSON.parse(readFileSync(file, 'utf8')) as { certs?: typeof certs }).certs ?? [];
  } catch {
    return [];
  }
  const newest = new Map<string, ClientCertificate>();
  for (const cert of certs) {
    if (cert.type !== 'client' || cert.revokedAt) continue;
    const notAfter = new Date(cert.notAfter);
    if (!(notAfter.getTime() > now)) continue;
    const prev = newest.get(cert.name);
    if (prev && prev.notAfter >= notAfter) continue;
    newest.set(cert.name, { identity: cert.name, serial: cert.serial, notAfter, roles: cert.roles ?? [], ...(cert.contact ? { contact: cert.contact } : {}) });
  }
  return [...newest.values()];
}
