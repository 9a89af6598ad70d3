/**
 * nginx as the reference proxy: the same server certificate, client CA, CRL bundle and TLS
 * settings as the broker (TLS 1.2/1.3, the same suites in the same order, server preference,
 * client certificate required, CRL checking, no tickets, no session cache), an ACL on the
 * certificate's OU, a per-identity request and connection limit, identity headers upstream,
 * upstream keep-alive and an access log to a file. One worker process (one process against the
 * broker's one), never a daemon, everything (pid, temp paths, logs) inside its own prefix.
 *
 * With `forward`, the same server is instead a forward proxy for absolute-form http requests, the
 * counterpart of the broker's forward listener: nginx accepts `GET http://host:port/path` request
 * lines, a map on the request line lets only http://127.0.0.1:UPSTREAM/ through (the broker's
 * forward rule: one host, one port), and the request goes to that fixed address (proxy_pass
 * http://$host… would need a resolver) with Host 127.0.0.1:UPSTREAM and nothing added, over the
 * kept-alive upstream block, as the broker's forward relay pools its destination connections. nginx
 * has no CONNECT.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TLS12_CIPHERS, TLS13_SUITES } from '../../src/tls/options.ts';

export function nginxBinary(): string | undefined {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) {
    if (spawnSync(p, ['-v'], { timeout: 10_000 }).status === 0) return p;
  }
  return undefined;
}

/** nginx from Debian's packages when it is missing (as root); returns its path or throws with what to do. */
export function ensureNginx(log: (s: string) => void): string {
  const found = nginxBinary();
  if (found) return found;
  if (process.getuid?.() !== 0) throw new Error('nginx is not installed; install it (apt-get install -y nginx-light) or run as root');
  log('nginx is missing: apt-get install nginx-light');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update'], { stdio: 'ignore', env, timeout: 300_000 });
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx-light'], { stdio: 'ignore', env, timeout: 300_000 });
  if (r.status !== 0) execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx'], { stdio: 'ignore', env, timeout: 300_000 });
  const path = nginxBinary();
  if (!path) throw new Error('nginx still missing after apt-get install');
  return path;
}

export function nginxVersion(bin: string): string {
  const r = spawnSync(bin, ['-V'], { encoding: 'utf8', timeout: 10_000 });
  const text = `${r.stdout}${r.stderr}`;
  const v = /nginx version: nginx\/(\S+)/.exec(text)?.[1] ?? '?';
  const ssl = /running with (OpenSSL [\d.]+\w*)/.exec(text)?.[1] ?? /built with (OpenSSL [\d.]+\w*)/.exec(text)?.[1] ?? '';
  return `${v}${ssl ? ` (${ssl})` : ''}`;
}

export interface NginxFiles {
  cert: string;
  key: string;
  clientCa: string;
  crl: string;
}

/** nginx's spelling of the broker's groups: OpenSSL 3.0 has no X25519MLKEM768, the rest is the same. */
export const NGINX_GROUPS = 'X25519:P-256:P-384';

/** The forward server's location: the ACL, the destination check, the fixed destination, no identity headers. */
function forwardLocation(upstreamPort: number): string {
  return `    # absolute-form requests to the one allowed destination only (origin-form and others: 403)
    set $forward_ok 0;
    if ($request ~ "^[A-Z]+ http://127\\.0\\.0\\.1:${upstreamPort}/") { set $forward_ok 1; }
    location / {
      if ($acl_ok = 0) { return 403; }
      if ($forward_ok = 0) { return 403; }
      limit_req zone=per_identity burst=1000000 nodelay;
      limit_conn conn_identity 60000;
      # kept-alive upstream connections, as the broker's forward relay keeps them
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:${upstreamPort};
      proxy_read_timeout 30s;
    }`;
}

export function writeNginxConfig(prefix: string, o: { port: number; upstreamPort: number; files: NginxFiles; maxConnections: number; role: string; nofile: number; forward?: boolean }): string {
  mkdirSync(join(prefix, 'logs'), { recursive: true });
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  // the worker (nobody when started as root) must reach its temp folders
  chmodSync(prefix, 0o755);
  const conf = `# written by scripts/bench/nginx.ts
worker_processes 1;
worker_rlimit_nofile ${Math.min(o.maxConnections * 2 + 1024, o.nofile)};
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'logs', 'error.log')} warn;
events { worker_connections ${o.maxConnections + 1024}; multi_accept on; }
http {
  client_body_temp_path ${join(prefix, 'tmp', 'body')};
  proxy_temp_path ${join(prefix, 'tmp', 'proxy')};
  fastcgi_temp_path ${join(prefix, 'tmp', 'fastcgi')};
  uwsgi_temp_path ${join(prefix, 'tmp', 'uwsgi')};
  scgi_temp_path ${join(prefix, 'tmp', 'scgi')};
  server_tokens off;
  # the broker's limits: 16 KiB of headers, 1 MiB bodies, 10 s for the head, 1000 requests per connection
  large_client_header_buffers 4 16k;
  client_max_body_size 1m;
  client_header_timeout 10s;
  keepalive_requests 1000;
  keepalive_timeout 120s;

  log_format bench escape=json '{"time":"$time_iso8601","remoteIp":"$remote_addr","subject":"$ssl_client_s_dn","serial":"$ssl_client_serial",'
    '"method":"$request_method","path":"$request_uri","status":$status,"bytesIn":$request_length,"bytesOut":$bytes_sent,'
    '"durationMs":"$request_time","upstreamMs":"$upstream_response_time","tls":"$ssl_protocol","cipher":"$ssl_cipher","resumed":"$ssl_session_reused"}';
  access_log ${join(prefix, 'logs', 'access.log')} bench buffer=64k flush=1s;

  # identity = the certificate's subject; the ACL wants OU=${o.role}
  map $ssl_client_s_dn $acl_ok { default 0; "~(^|,)OU=${o.role}(,|$)" 1; }
  limit_req_zone $ssl_client_s_dn zone=per_identity:10m rate=1000000r/s;
  limit_conn_zone $ssl_client_s_dn zone=conn_identity:10m;

  upstream app {
    server 127.0.0.1:${o.upstreamPort};
    keepalive 64;
    keepalive_requests 100000;
    keepalive_timeout 60s;
  }

  server {
    listen 127.0.0.1:${o.port} ssl backlog=4096;
    server_name localhost;
    ssl_certificate ${o.files.cert};
    ssl_certificate_key ${o.files.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ${TLS12_CIPHERS};
    ssl_conf_command Ciphersuites ${TLS13_SUITES};
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve ${NGINX_GROUPS};
    ssl_session_tickets off;
    ssl_session_cache off;
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_client_certificate ${o.files.clientCa};
    ssl_crl ${o.files.crl};

${o.forward ? forwardLocation(o.upstreamPort) : `    location / {
      if ($acl_ok = 0) { return 403; }
      limit_req zone=per_identity burst=1000000 nodelay;
      limit_conn conn_identity 60000;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:${o.upstreamPort};
      proxy_set_header X-Client-Subject $ssl_client_s_dn;
      proxy_set_header X-Client-Serial $ssl_client_serial;
      proxy_set_header X-Client-Fingerprint $ssl_client_fingerprint;
      proxy_set_header X-Client-Verify $ssl_client_verify;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_read_timeout 30s;
    }`}
  }
}
`;
  const file = join(prefix, 'nginx.conf');
  writeFileSync(file, conf);
  return file;
}
