/**
 * The texts of the onboarding kit: the client snippets (each a file in snippets/, run as it is)
 * and the partner's README.md, which includes them. Everything is filled in for one identity and
 * one broker URL; file names are those `pki issue` (or `broker enroll`) writes into the kit.
 */
import type { BundleOptions, ReachableRoute } from './bundle.ts';

/** Where `broker enroll` goes when the kit could not tell the certificate-optional listener's address. */
export const ENROLL_URL_PLACEHOLDER = 'https://BROKER_HOST:8444';

interface Fill extends BundleOptions {
  url: string;
  path: string;
}

const fence = (lang: string, text: string) => `\`\`\`${lang}\n${text.endsWith('\n') ? text : `${text}\n`}\`\`\``;

/** The snippet files, by path inside the kit. */
export function snippetFiles(f: Fill): Record<string, string> {
  const n = f.identity;
  const target = `${f.url}${f.path}`;
  return {
    'snippets/curl.sh': `#!/bin/sh
# ${n}: one request to the broker with curl (7.76 or later for --fail-with-body).
# Run it from anywhere: it works in the kit folder.
set -eu
cd "$(dirname "$0")/.."
curl --silent --show-error --fail-with-body \\
  --cert ${n}.crt --key ${n}.key --cacert ca.crt \\
  "${target}"
echo
`,
    'snippets/client.py': `"""${n}: one request to the broker with Python requests (pip install requests)."""
import os
import sys

import requests

KIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def kit(name):
    return os.path.join(KIT, name)


response = requests.get(
    "${target}",
    cert=(kit("${n}.crt"), kit("${n}.key")),  # your certificate (+ issuing CA) and key
    verify=kit("ca.crt"),  # the broker's CA, not the system roots
    timeout=30,
)
if response.status_code >= 400:
    sys.exit(f"HTTP {response.status_code}: {response.text}")
print(response.text)
`,
    'snippets/client_urllib.py': `"""${n}: the same request with the Python standard library only (ssl + urllib)."""
import os
import ssl
import urllib.request

KIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def kit(name):
    return os.path.join(KIT, name)


context = ssl.create_default_context(cafile=kit("ca.crt"))
context.load_cert_chain(kit("${n}.crt"), kit("${n}.key"))
with urllib.request.urlopen("${target}", context=context, timeout=30) as response:
    print(response.read().decode())
`,
    'snippets/java-keystores.sh': `#!/bin/sh
# ${n}: the Java key store (your PKCS#12: certificate chain + key) and trust store (the broker's CA),
# made with keytool. The PKCS#12 password: $BROKER_P12_PASSWORD, else the first line of ${n}.p12.pass.
set -eu
cd "$(dirname "$0")/.."
if [ -z "\${BROKER_P12_PASSWORD:-}" ]; then
  if [ ! -f ${n}.p12.pass ]; then echo "set BROKER_P12_PASSWORD to the password of ${n}.p12" >&2; exit 1; fi
  BROKER_P12_PASSWORD=$(head -n 1 ${n}.p12.pass)
fi
export BROKER_P12_PASSWORD
rm -f keystore.p12 truststore.p12
keytool -importkeystore -noprompt \\
  -srckeystore ${n}.p12 -srcstoretype PKCS12 -srcstorepass:env BROKER_P12_PASSWORD \\
  -destkeystore keystore.p12 -deststoretype PKCS12 -deststorepass:env BROKER_P12_PASSWORD
# every CA certificate of ca.crt (two roots during a root rollover), one trusted entry each
count=$(grep -c 'BEGIN CERTIFICATE' ca.crt)
i=1
while [ "$i" -le "$count" ]; do
  awk -v want="$i" '/BEGIN CERTIFICATE/ { n++ } n == want { print } n == want && /END CERTIFICATE/ { exit }' ca.crt |
    keytool -importcert -noprompt -alias "broker-ca-$i" -keystore truststore.p12 -storetype PKCS12 -storepass changeit
  i=$((i + 1))
done
echo "keystore.p12 and truststore.p12 are ready"
`,
    'snippets/Client.java': `// ${n}: one request to the broker with java.net.http.HttpClient (Java 11+).
// First run snippets/java-keystores.sh, then, in the kit folder: java snippets/Client.java
import java.io.FileInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class Client {
    public static void main(String[] args) throws Exception {
        String password = System.getenv("BROKER_P12_PASSWORD");
        if (password == null) password = Files.readAllLines(Path.of("${n}.p12.pass")).get(0);

        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream("keystore.p12")) {
            keys.load(in, password.toCharArray());
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, password.toCharArray());

        KeyStore trust = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream("truststore.p12")) {
            trust.load(in, "changeit".toCharArray());
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);

        SSLContext tls = SSLContext.getInstance("TLS");
        tls.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        HttpClient client = HttpClient.newBuilder().sslContext(tls).version(HttpClient.Version.HTTP_1_1).build();

        HttpRequest request = HttpRequest.newBuilder(URI.create("${target}")).GET().build();
        HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() >= 400) {
            System.err.println("HTTP " + response.statusCode() + ": " + response.body());
            System.exit(1);
        }
        System.out.println(response.body());
    }
}
`,
    'snippets/client.mjs': `// ${n}: one request to the broker with Node's https module (Node 18+): node snippets/client.mjs
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

const kit = (name) => readFileSync(new URL(\`../\${name}\`, import.meta.url));
const req = request(new URL('${target}'), { cert: kit('${n}.crt'), key: kit('${n}.key'), ca: kit('ca.crt') }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => (body += chunk));
  res.on('end', () => {
    if (res.statusCode >= 400) {
      console.error(\`HTTP \${res.statusCode}: \${body}\`);
      process.exitCode = 1;
    } else console.log(body);
  });
});
req.on('error', (err) => {
  console.error(err.message);
  process.exitCode = 1;
});
req.end();
`,
    'snippets/main.go': `// ${n}: one request to the broker with Go's crypto/tls. In the kit folder: go run snippets/main.go
package main

import (
\t"crypto/tls"
\t"crypto/x509"
\t"fmt"
\t"io"
\t"log"
\t"net/http"
\t"os"
)

func main() {
\tcert, err := tls.LoadX509KeyPair("${n}.crt", "${n}.key")
\tif err != nil {
\t\tlog.Fatalf("reading ${n}.crt / ${n}.key: %v", err)
\t}
\tcaPEM, err := os.ReadFile("ca.crt")
\tif err != nil {
\t\tlog.Fatalf("reading ca.crt: %v", err)
\t}
\troots := x509.NewCertPool()
\tif !roots.AppendCertsFromPEM(caPEM) {
\t\tlog.Fatal("ca.crt holds no certificate")
\t}
\tclient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
\t\tCertificates: []tls.Certificate{cert},
\t\tRootCAs:      roots,
\t\tMinVersion:   tls.VersionTLS12,
\t}}}
\tres, err := client.Get("${target}")
\tif err != nil {
\t\tlog.Fatal(err)
\t}
\tdefer res.Body.Close()
\tbody, err := io.ReadAll(res.Body)
\tif err != nil {
\t\tlog.Fatal(err)
\t}
\tif res.StatusCode >= 400 {
\t\tfmt.Fprintf(os.Stderr, "HTTP %d: %s\\n", res.StatusCode, body)
\t\tos.Exit(1)
\t}
\tfmt.Println(string(body))
}
`,
  };
}

function routesSection(routes: readonly ReachableRoute[] | undefined): string {
  if (routes === undefined) {
    return 'The kit was made without the broker\'s configuration (`--config`), so the routes your roles reach are not listed here: ask your contact at the broker\'s operator.';
  }
  if (!routes.length) return 'No route of the broker\'s configuration admits your roles yet: every request will be refused with 403 until one does. Ask your contact at the broker\'s operator.';
  const rows = routes.map((r) => {
    const extra = r.auth.filter((a) => a !== 'mtls');
    const needs = !r.auth.includes('mtls') ? `${extra.join(' + ')} (no certificate needed; served on the certificate-optional port)` : extra.length ? `certificate + ${extra.join(' + ')}` : 'certificate';
    return `| \`${r.path}\` | ${r.methods ? r.methods.join(', ') : 'any'} | ${needs} | ${r.websocket ? 'yes' : 'no'} |`;
  });
  const first = routes[0] as ReachableRoute;
  return [`Paths are prefixes on whole segments: \`${first.path}\` covers \`${first.path.replace(/\/$/, '')}/…\`. Anything else is refused (403).`, '', '| path | methods | credentials | WebSocket |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The partner's README.md. */
export function bundleReadme(f: Fill & { placeholderUrl: boolean; snippets: Record<string, string> }): string {
  const n = f.identity;
  const c = f.credentials;
  const s = (name: string) => f.snippets[name] ?? '';
  const ca = '--ca ca.crt';
  const creds = `--cert ${n}.crt --key ${n}.key ${ca}`;
  const lines: string[] = [
    `# Connecting to the broker as \`${n}\``,
    '',
    'This folder is your onboarding kit for the access broker: who you are to it, what you may reach, and',
    'clients that work as they are. Keep it private: it holds your credentials.',
    '',
    '| | |',
    '| --- | --- |',
    `| identity | \`${n}\` |`,
    `| roles | ${f.roles.map((r) => `\`${r}\``).join(', ') || '(none)'} |`,
  ];
  if (c.kind === 'certificate') lines.push(`| certificate | serial \`${c.serial}\`, valid until **${c.notAfter}** |`);
  else lines.push(`| enrolment token | \`${n}.token\`, single use, valid until **${c.expires}**${c.certTtl ? `; the certificate it gets lives ${c.certTtl}` : ''} |`);
  lines.push(`| contact for expiry notices | ${f.contact ? f.contact : '(none on file: ask the operator to add one)'} |`, `| broker URL | \`${f.url}\` |`, '');
  if (f.placeholderUrl) {
    lines.push(`> **The broker URL above is a placeholder** (\`${f.url}\`): the kit was made without \`--url\`. Replace it in this file and in \`snippets/\` with the address the operator gives you.`, '');
  }

  if (c.kind === 'token') {
    const enrollUrl = c.enrollUrl ?? ENROLL_URL_PLACEHOLDER;
    lines.push(
      '## First: enrol (once)',
      '',
      `Your key pair is made on your machine by \`broker enroll\` and never leaves it; the broker certifies it for \`${n}\` and the roles above. In this folder, run:`,
      '',
      fence('sh', `broker enroll --url ${enrollUrl} --token "$(cat ${n}.token)" --out . --p12`),
      '',
      `\`${enrollUrl}\` is the broker's enrolment address (its certificate-optional listener); every other command and snippet here uses the broker URL \`${f.url}\`.`,
      `Before it sends anything, \`broker enroll\` checks that the broker holds the CA the token pins. It writes \`${n}.crt\` (your certificate, then the issuing CA), \`${n}.key\` (your private key, 0600), \`ca.crt\` (the broker's root CA), and \`${n}.p12\` (the same as PKCS#12, for Java) with a generated password in \`${n}.p12.pass\`.`,
      `If \`BROKER_P12_PASSWORD\` is set, that password is used instead and no \`${n}.p12.pass\` is written; on a terminal without it, enroll asks for a password: in both cases, have \`BROKER_P12_PASSWORD\` set to it when you run the Java snippets.`,
      `The token works once, until **${c.expires}**; delete \`${n}.token\` afterwards. Ask the operator for a new invitation if it expired.`,
      '',
    );
    if (c.enrollUrl === undefined) {
      lines.push(`> **The enrolment address above is a placeholder** (\`${enrollUrl}\`): the kit was made without \`--enroll-url\` or the broker's \`listenCertOptional\` port. Ask the operator for the address of the broker's certificate-optional listener.`, '');
    }
  }

  lines.push('## Files', '');
  if (c.kind === 'certificate') {
    lines.push(
      `- \`${c.cert}\`: your certificate, then the issuing CA (send both: the chain)`,
      `- \`${c.key}\`: your private key (the broker's CA keeps no copy; keep it 0600)`,
      `- \`${c.ca}\`: the broker's root CA, to verify the broker (not your system's roots)`,
    );
    if (c.p12) lines.push(`- \`${c.p12}\`: the same certificate, chain and key as PKCS#12 (Java, Windows, browsers)${c.p12Password ? `; its password is in \`${c.p12Password}\` (the operator should send it by another channel and delete it here)` : '; its password comes separately from the operator'}`);
  } else {
    lines.push(
      `- \`${n}.token\`: your one-time enrolment token (no key and no certificate yet: \`broker enroll\` makes them here)`,
      '- `ca.crt`: the broker\'s root CA (the token pins it too; enroll writes it again)',
      `- after enrolment: \`${n}.crt\`, \`${n}.key\`, \`${n}.p12\` (and \`${n}.p12.pass\`), which the snippets below use`,
    );
  }
  lines.push('- `snippets/`: the clients below, as files', '');

  lines.push('## What you can reach', '', routesSection(f.routes), '');
  lines.push(
    '## Try it',
    '',
    `Each snippet sends \`GET ${f.path}\` to the broker with your certificate and prints the answer. Run them from this folder.`,
    '',
    '### curl',
    '',
    fence('sh', s('snippets/curl.sh')),
    '',
    '### Python (requests)',
    '',
    fence('python', s('snippets/client.py')),
    '',
    'Without requests, the standard library does the same (`snippets/client_urllib.py`):',
    '',
    fence('python', s('snippets/client_urllib.py')),
    '',
    '### Java (keytool + HttpClient)',
    '',
    `Java reads the PKCS#12${c.kind === 'certificate' && !c.p12 ? ' (this kit has none: ask for one, or make it with `openssl pkcs12 -export -in ' + n + '.crt -inkey ' + n + '.key -out ' + n + '.p12`)' : ''}. Import it and the CA with keytool (\`sh snippets/java-keystores.sh\`):`,
    '',
    fence('sh', s('snippets/java-keystores.sh')),
    '',
    'then `java snippets/Client.java` (Java 11+ runs a single source file):',
    '',
    fence('java', s('snippets/Client.java')),
    '',
    '### Node',
    '',
    fence('js', s('snippets/client.mjs')),
    '',
    '### Go',
    '',
    fence('go', s('snippets/main.go')),
    '',
    '## The broker\'s own tools',
    '',
    'When something does not connect, `doctor --client` walks every step (DNS, TCP, TLS, your certificate, the route) and says which one fails and why:',
    '',
    fence('sh', `broker doctor --client --url ${f.url} ${creds} --path ${f.path}`),
    '',
    'To let applications that cannot do client certificates call the broker, `connect` listens on loopback in plain HTTP and forwards over mutual TLS (it renews the certificate by itself when the broker allows renewal):',
    '',
    fence('sh', `broker connect --url ${f.url} ${creds} --listen 127.0.0.1:8080\ncurl http://127.0.0.1:8080${f.path}`),
    '',
    'Before the certificate expires, renew it over mutual TLS (a new key is made here; the same identity and roles come back). Run it from cron or the shipped systemd timer:',
    '',
    fence('sh', `broker renew --url ${f.url} ${creds} --out .`),
    '',
    `It replaces \`${n}.crt\` and \`${n}.key\`, not \`${n}.p12\`: for Java, make the PKCS#12 again with the same password (from \`${n}.p12.pass\`; with \`BROKER_P12_PASSWORD\`, use \`-passout env:BROKER_P12_PASSWORD\` instead) and re-run the key store script:`,
    '',
    fence('sh', `openssl pkcs12 -export -in ${n}.crt -inkey ${n}.key -out ${n}.p12 -name ${n} -passout file:${n}.p12.pass && sh snippets/java-keystores.sh`),
    '',
  );
  return `${lines.join('\n')}\n`;
}
