/*
 * The benchmark's load generator in C (scripts/bench/run.ts builds it with scripts/bench/loadgen.ts
 * and uses it for the keepalive and handshake modes; `--gen node` uses scripts/bench/load.ts
 * instead). One process, one thread, epoll (level-triggered), non-blocking sockets, OpenSSL.
 *
 *   cc -O2 -o loadgen loadgen.c -lssl -lcrypto -lm
 *   loadgen CONFIG      CONFIG: key=value lines written by loadgen.ts (writeLoadgenConfig): mode,
 *                       host, port, servername, path, ca, offset, connections, concurrency, rate,
 *                       groups, open_concurrency, timeout_ms, max_life_ms, shortcuts, connect and
 *                       host_header (optional), and one `id=CERT<TAB>KEY` line per client identity
 *                       (PEM: certificate and chain; key).
 *
 * Commands, one a line on stdin: `prepare`, `run START_MS END_MS` (epoch ms), `status`, `close`.
 * Answers, one JSON object a line on stdout, the messages load.ts sends over IPC: {"type":"hello"},
 * {"type":"prepared",…}, {"type":"result",…} (LoadResult, with the latency histogram in hist.ts's
 * JSON form), {"type":"status",…}, {"type":"failed","error":…}.
 *
 * Modes (as load.ts):
 * - keepalive: `connections` connections, connection i with identity (offset + i) % n, HTTP/1.1
 *   keep-alive GETs, one in flight per connection. concurrency ≥ connections: each connection
 *   sends its next request when the answer is in (closed loop); fewer: `concurrency` requests in
 *   flight, taking the connections in round-robin order; rate > 0: every connection sends on a
 *   fixed schedule (rate / connections per second each) and latency counts from the scheduled
 *   start when the connection was behind (no coordinated omission). A connection the server
 *   closes (Connection: close, or idle close) is opened again with a full handshake on its next
 *   request, inside that request's latency.
 * - handshake: `concurrency` slots, each request on a new connection with a full handshake (no
 *   session is ever offered: no tickets, no cache) and `Connection: close`.
 * - tunnel: as handshake, but each new connection first sends `CONNECT <connect> HTTP/1.1` (a
 *   forward proxy's tunnel) and, once answered 2xx, the GET (with `Connection: close`) goes
 *   through the tunnel in plain HTTP to the destination; one request is the whole exchange, from
 *   the TCP connect to the GET's last byte. A non-2xx answer to the CONNECT counts as non-2xx.
 * `host_header` replaces the Host header's value (default servername:port; in tunnel mode the
 * CONNECT authority): with an absolute-form path (`http://127.0.0.1:P/64`) a keepalive load is a
 * forward proxy's absolute-form load.
 * Requests count when they start (scheduled start in rate mode) and end inside the window; those
 * that end after it are `late`. No loop starts a request after the window end; what is still in
 * flight then gets at most min(timeout, 3 s). The process exits when stdin reaches EOF, its parent
 * changes, or after max_life_ms. Only loopback addresses.
 */
#define _GNU_SOURCE
/* the ENGINE calls below (see fast_cert_decode) are deprecated in OpenSSL 3, not gone */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#endif
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* ------------------------------------------------------------------ small helpers */

static double mono_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static double epoch_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void die(const char *fmt, ...);

static void *xcalloc(size_t n, size_t s) {
  void *p = calloc(n, s);
  if (!p) die("out of memory");
  return p;
}

/* A growing string for the JSON lines. */
struct sb {
  char *p;
  size_t n, cap;
};

static void sb_add(struct sb *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->n;
    int k = vsnprintf(b->p ? b->p + b->n : NULL, room, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < room) {
      b->n += (size_t)k;
      return;
    }
    b->cap = (b->cap + (size_t)k + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
}

static void sb_json_str(struct sb *b, const char *s) {
  sb_add(b, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') sb_add(b, "\\%c", ch);
    else if (ch < 0x20) sb_add(b, "\\u%04x", ch);
    else sb_add(b, "%c", ch);
  }
  sb_add(b, "\"");
}

static void emit(struct sb *b) {
  sb_add(b, "\n");
  fwrite(b->p, 1, b->n, stdout);
  fflush(stdout);
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

static void die(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct sb b = {0};
  sb_add(&b, "{\"type\":\"failed\",\"error\":");
  sb_json_str(&b, msg);
  sb_add(&b, "}");
  emit(&b);
  exit(1);
}

/* ------------------------------------------------------------------ configuration */

enum { M_KEEPALIVE, M_HANDSHAKE, M_TUNNEL };

static struct {
  int mode;
  char host[64];
  int port;
  char servername[256];
  char path[2048];
  char connect_to[300];
  char host_header[300];
  char ca[4096];
  int offset, connections, concurrency, open_concurrency;
  double rate;
  char groups[512];
  double timeout_us;
  double max_life_ms;
  int shortcuts;
  int nids;
  char **certs, **keys;
} cfg;

static void read_config(const char *file) {
  FILE *f = fopen(file, "r");
  if (!f) die("config %s: %s", file, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int idcap = 0;
  strcpy(cfg.groups, "X25519");
  cfg.open_concurrency = 32;
  cfg.timeout_us = 30e6;
  cfg.max_life_ms = 20 * 60e3;
  cfg.shortcuts = 1;
  while ((len = getline(&line, &cap, f)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = 0;
    const char *k = line, *v = eq + 1;
#define STR(name, field)                                                     \
  if (!strcmp(k, name)) {                                                     \
    if (strlen(v) >= sizeof cfg.field) die("config: %s too long", name);     \
    strcpy(cfg.field, v);                                                     \
    continue;                                                                 \
  }
    STR("host", host) STR("servername", servername) STR("path", path) STR("ca", ca) STR("groups", groups)
    STR("connect", connect_to) STR("host_header", host_header)
#undef STR
    if (!strcmp(k, "mode")) {
      if (!strcmp(v, "keepalive")) cfg.mode = M_KEEPALIVE;
      else if (!strcmp(v, "handshake")) cfg.mode = M_HANDSHAKE;
      else if (!strcmp(v, "tunnel")) cfg.mode = M_TUNNEL;
      else die("config: mode %s (keepalive, handshake or tunnel)", v);
    } else if (!strcmp(k, "port")) cfg.port = atoi(v);
    else if (!strcmp(k, "offset")) cfg.offset = atoi(v);
    else if (!strcmp(k, "connections")) cfg.connections = atoi(v);
    else if (!strcmp(k, "concurrency")) cfg.concurrency = atoi(v);
    else if (!strcmp(k, "open_concurrency")) cfg.open_concurrency = atoi(v);
    else if (!strcmp(k, "rate")) cfg.rate = atof(v);
    else if (!strcmp(k, "timeout_ms")) cfg.timeout_us = atof(v) * 1e3;
    else if (!strcmp(k, "max_life_ms")) cfg.max_life_ms = atof(v);
    else if (!strcmp(k, "shortcuts")) cfg.shortcuts = atoi(v);
    else if (!strcmp(k, "id")) {
      char *tab = strchr(v, '\t');
      if (!tab) die("config: id needs CERT<TAB>KEY");
      if (cfg.nids == idcap) {
        idcap = idcap ? idcap * 2 : 16;
        cfg.certs = realloc(cfg.certs, idcap * sizeof *cfg.certs);
        cfg.keys = realloc(cfg.keys, idcap * sizeof *cfg.keys);
        if (!cfg.certs || !cfg.keys) die("out of memory");
      }
      cfg.certs[cfg.nids] = strndup(v, (size_t)(tab - v));
      cfg.keys[cfg.nids] = strdup(tab + 1);
      cfg.nids++;
    }
  }
  free(line);
  fclose(f);
  if (cfg.nids == 0) die("config: no identity");
  if (cfg.port <= 0 || cfg.port > 65535) die("config: port %d", cfg.port);
  if (cfg.mode == M_KEEPALIVE && cfg.connections <= 0) die("config: keepalive needs connections > 0");
  if (cfg.mode == M_TUNNEL && !cfg.connect_to[0]) die("config: tunnel needs connect=HOST:PORT");
  if (cfg.concurrency <= 0) die("config: concurrency %d", cfg.concurrency);
  if (cfg.open_concurrency <= 0) cfg.open_concurrency = 1;
  if (cfg.offset < 0) cfg.offset = 0;
}

/* handshake and tunnel: a new connection (full handshake) per request, `concurrency` at once */
static int per_request_conn(void) { return cfg.mode != M_KEEPALIVE; }

/* ------------------------------------------------------------------ TLS */

static SSL_CTX *ctx;
static struct ident {
  X509 *cert;
  STACK_OF(X509) *chain;
  EVP_PKEY *key;
} *ids;

static const char *ssl_err(void) {
  static char buf[256];
  unsigned long e = ERR_get_error();
  if (!e) return "unknown error";
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

static void load_ident(int i) {
  FILE *f = fopen(cfg.certs[i], "r");
  if (!f) die("identity %s: %s", cfg.certs[i], strerror(errno));
  ids[i].cert = PEM_read_X509(f, NULL, NULL, NULL);
  if (!ids[i].cert) die("identity %s: %s", cfg.certs[i], ssl_err());
  ids[i].chain = sk_X509_new_null();
  X509 *x;
  while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) sk_X509_push(ids[i].chain, x);
  ERR_clear_error(); /* the end of the file */
  fclose(f);
  f = fopen(cfg.keys[i], "r");
  if (!f) die("identity key %s: %s", cfg.keys[i], strerror(errno));
  ids[i].key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  if (!ids[i].key) die("identity key %s: %s", cfg.keys[i], ssl_err());
}

/*
 * Two client-side shortcuts (config shortcuts=0 turns both off). Neither changes what the server
 * sees or does; they cut what the generator spends per full handshake, which on OpenSSL 3.0 is
 * as much as the server's own handshake:
 *
 * 1. fast_cert_decode: OpenSSL 3.0 decodes the public key of every certificate it parses through
 *    its provider decoders, building a decoder chain per certificate (~200 µs each, most of a
 *    client handshake's CPU). When an ENGINE is the default for EC key methods it takes the
 *    legacy path instead (~30 µs), so this registers one that hands out OpenSSL's own built-in EC
 *    method: the keys of the server's certificates become legacy EC keys, verified by the same
 *    ECDSA code. Only keys decoded from certificates are affected (the client's own key and the
 *    key exchange stay on the provider). OpenSSL 3.0 and 3.1 only; later versions cache decoders.
 * 2. verify_cached: the server's chain is verified against the CA file (X509_verify_cert, with
 *    the host name) the first time it is seen, and again every 5 s; in between, a chain that is
 *    byte for byte one already verified (SHA-256 of each certificate) is accepted on that verdict.
 *    The server's CertificateVerify signature (its proof of the key) is checked on every
 *    handshake as always.
 */
#ifndef OPENSSL_NO_ENGINE
static int legacy_ec_nids[] = {EVP_PKEY_EC};
static int legacy_ec_meths(ENGINE *e, EVP_PKEY_METHOD **pm, const int **nids, int nid) {
  (void)e;
  if (!pm) {
    *nids = legacy_ec_nids;
    return 1;
  }
  *pm = nid == EVP_PKEY_EC ? (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(EVP_PKEY_EC) : NULL;
  return *pm != NULL;
}
#endif

static int fast_cert_decode(void) {
#ifndef OPENSSL_NO_ENGINE
  unsigned long v = OpenSSL_version_num();
  if (v < 0x30000000UL || v >= 0x30200000UL) return 0;
  ENGINE *e = ENGINE_new();
  if (!e) return 0;
  int ok = ENGINE_set_id(e, "bench-legacy-ec") && ENGINE_set_name(e, "the built-in EC key method") && ENGINE_set_pkey_meths(e, legacy_ec_meths) &&
           ENGINE_init(e) && ENGINE_set_default_pkey_meths(e);
  ENGINE_free(e); /* the structural reference; init and default keep it */
  ERR_clear_error();
  return ok;
#else
  return 0;
#endif
}

static struct {
  unsigned char key[32];
  double at;
} vcache[8];
static int vcache_n, vcache_next;
static int shortcut_decode, shortcut_verify;

static int verify_cached(X509_STORE_CTX *x, void *arg) {
  (void)arg;
  unsigned char key[32], md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_MD_CTX *h = EVP_MD_CTX_new();
  int ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL);
  X509 *leaf = X509_STORE_CTX_get0_cert(x);
  STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(x);
  ok = ok && leaf && X509_digest(leaf, EVP_sha256(), md, &mdlen) && EVP_DigestUpdate(h, md, mdlen);
  for (int i = 0; ok && untrusted && i < sk_X509_num(untrusted); i++)
    ok = X509_digest(sk_X509_value(untrusted, i), EVP_sha256(), md, &mdlen) && EVP_DigestUpdate(h, md, mdlen);
  ok = ok && EVP_DigestFinal_ex(h, key, NULL);
  EVP_MD_CTX_free(h);
  double now = mono_us();
  if (ok)
    for (int i = 0; i < vcache_n; i++)
      if (now - vcache[i].at < 5e6 && !memcmp(vcache[i].key, key, sizeof key)) {
        X509_STORE_CTX_set_error(x, X509_V_OK);
        return 1;
      }
  int r = X509_verify_cert(x);
  if (r == 1 && ok) {
    memcpy(vcache[vcache_next].key, key, sizeof key);
    vcache[vcache_next].at = now;
    vcache_next = (vcache_next + 1) % 8;
    if (vcache_n < 8) vcache_n++;
  }
  return r;
}

static void setup_tls(void) {
  if (cfg.shortcuts) shortcut_decode = fast_cert_decode();
  ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) die("SSL_CTX_new: %s", ssl_err());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_set1_groups_list(ctx, cfg.groups) != 1)
    die("groups %s: %s (this OpenSSL is %s; --gen node uses Node's)", cfg.groups, ssl_err(), OpenSSL_version(OPENSSL_VERSION));
  if (SSL_CTX_load_verify_locations(ctx, cfg.ca, NULL) != 1) die("CA file %s: %s", cfg.ca, ssl_err());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (cfg.shortcuts) {
    SSL_CTX_set_cert_verify_callback(ctx, verify_cached, NULL);
    shortcut_verify = 1;
  }
  /* never resume: no tickets, no client session cache (and no session is ever set on an SSL) */
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  /* read whole socket buffers, not record header then record body: fewer read(2) calls */
  SSL_CTX_set_read_ahead(ctx, 1);
  ids = xcalloc((size_t)cfg.nids, sizeof *ids);
  for (int i = 0; i < cfg.nids; i++) load_ident(i);
  if (cfg.nids == 1 && SSL_CTX_use_cert_and_key(ctx, ids[0].cert, ids[0].key, ids[0].chain, 1) != 1)
    die("client certificate %s: %s", cfg.certs[0], ssl_err());
}

/* ------------------------------------------------------------------ histogram (hist.ts) */

static double LOG_GROWTH;
static int NBUCKETS;
static struct {
  double *counts;
  double n, min, max, sum;
} hist;

static void hist_init(void) {
  LOG_GROWTH = log(1.02);
  NBUCKETS = (int)ceil(log(600e6) / LOG_GROWTH) + 2;
  hist.counts = xcalloc((size_t)NBUCKETS, sizeof *hist.counts);
}

static void hist_reset(void) {
  memset(hist.counts, 0, (size_t)NBUCKETS * sizeof *hist.counts);
  hist.n = hist.sum = hist.max = 0;
  hist.min = INFINITY;
}

static void hist_record(double us) {
  int i = us <= 1 ? 0 : (int)ceil(log(us) / LOG_GROWTH);
  if (i > NBUCKETS - 1) i = NBUCKETS - 1;
  hist.counts[i]++;
  hist.n++;
  hist.sum += us;
  if (us < hist.min) hist.min = us;
  if (us > hist.max) hist.max = us;
}

/* ------------------------------------------------------------------ connections */

enum { K_CONN = 1, K_LINGER, K_STDIN };
enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_SEND, S_READ };
enum { P_HEAD, P_LEN, P_EOF, P_CSIZE, P_CDATA, P_CCRLF, P_CTRAIL, P_DONE };
enum { T_NONE, T_START, T_AFTER_ERROR };
#define HEAD_MAX 8192

struct conn {
  int kind;
  int idx;
  int fd;
  SSL *ssl;
  int state;
  uint32_t ev;
  int ident;
  int inflight;
  int resumed;
  int stage; /* tunnel: 0 while the CONNECT is sent and answered, then 1 (the request itself) */
  double t0;     /* latency counts from here (the scheduled start when behind schedule) */
  double tstart; /* when the request really started (for its timeout) */
  size_t wpos;
  /* response parser */
  int ps, status, close_after;
  long long rem, body;
  size_t hlen, llen;
  char line[256];
  char head[HEAD_MAX];
  /* timer (heap) */
  double due;
  int hidx, taction;
  /* rate mode */
  double next_sched;
};

struct lingerer {
  int kind;
  int fd;
  double since;
  struct lingerer *prev, *next;
};

static int ep;
static struct conn *conns;
static int nconns;
static struct lingerer *lingers;
static int stdin_kind = K_STDIN;
static char rbuf[65536];
static char *req;
static size_t req_len;
/* tunnel mode: the CONNECT request sent first on every connection */
static char *creq;
static size_t creq_len;

enum { PH_IDLE, PH_PREPARE, PH_RUN, PH_DRAIN };
static int phase = PH_IDLE;
static int g_inflight;
static long long closed_by_peer;
static unsigned long long hs_next;

/* the measured window (monotonic µs) and its counters */
static double win_start, win_end, drain_deadline, win_ms;
static struct rusage ru0;
static struct {
  long long ok, non2xx, errors, late, resumed;
  double bytes;
  char samples[5][256];
  int nsamples;
} st;

/* prepare */
static struct {
  int total, started, done, errors, nsamples;
  char samples[5][256];
  double t0;
} pr;

/* round-robin queue of free connections (keepalive with concurrency < connections) */
static int *q;
static int qhead, qlen;

static int loop_kind(void);
static void start_request(struct conn *c, double t0);
static void drive(struct conn *c);
static void after_completion(struct conn *c);

static void sample(char (*samples)[256], int *n, const char *msg) {
  if (*n >= 5) return;
  snprintf(samples[*n], 256, "%s", msg);
  (*n)++;
}

/* ---- timers: a binary min-heap of connections by due time (one timer per connection) */

static struct conn **heap;
static int hn;

static void heap_swap(int a, int b) {
  struct conn *t = heap[a];
  heap[a] = heap[b];
  heap[b] = t;
  heap[a]->hidx = a;
  heap[b]->hidx = b;
}

static void heap_up(int i) {
  while (i > 0) {
    int p = (i - 1) / 2;
    if (heap[p]->due <= heap[i]->due) break;
    heap_swap(i, p);
    i = p;
  }
}

static void heap_down(int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < hn && heap[l]->due < heap[m]->due) m = l;
    if (r < hn && heap[r]->due < heap[m]->due) m = r;
    if (m == i) break;
    heap_swap(i, m);
    i = m;
  }
}

static void timer_cancel(struct conn *c) {
  if (c->hidx < 0) return;
  int i = c->hidx;
  c->hidx = -1;
  c->taction = T_NONE;
  hn--;
  if (i == hn) return;
  heap[i] = heap[hn];
  heap[i]->hidx = i;
  heap_up(i);
  heap_down(heap[i]->hidx);
}

static void timer_set(struct conn *c, double due, int action) {
  timer_cancel(c);
  c->due = due;
  c->taction = action;
  c->hidx = hn;
  heap[hn++] = c;
  heap_up(c->hidx);
}

/* ---- sockets */

static void set_ev(struct conn *c, uint32_t ev) {
  if (c->fd < 0 || c->ev == ev) return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == 0) c->ev = ev;
}

/* Closes at once (errors, the window's end, `close`). */
static void hard_close(struct conn *c) {
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->ev = 0;
  c->state = S_IDLE;
}

/*
 * Closes politely after a complete answer: close_notify, then the socket stays open (not counted
 * against any slot) until the server's end of file or 1 s, so the server sees an orderly close,
 * as with Node's client, not a reset for unread data.
 */
static void linger_close(struct conn *c) {
  if (c->ssl) {
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    ERR_clear_error();
    c->ssl = NULL;
  }
  if (c->fd >= 0) {
    struct lingerer *l = malloc(sizeof *l);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = l};
    if (!l || epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) != 0) {
      free(l);
      close(c->fd);
    } else {
      l->kind = K_LINGER;
      l->fd = c->fd;
      l->since = mono_us();
      l->prev = NULL;
      l->next = lingers;
      if (lingers) lingers->prev = l;
      lingers = l;
    }
  }
  c->fd = -1;
  c->ev = 0;
  c->state = S_IDLE;
}

static void linger_free(struct lingerer *l) {
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  if (l->prev) l->prev->next = l->next;
  else lingers = l->next;
  if (l->next) l->next->prev = l->prev;
  free(l);
}

static void linger_event(struct lingerer *l) {
  for (;;) {
    ssize_t k = read(l->fd, rbuf, sizeof rbuf);
    if (k > 0) continue;
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) return;
    linger_free(l);
    return;
  }
}

static int loopback(struct sockaddr_storage *ss, socklen_t *len) {
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  memset(ss, 0, sizeof *ss);
  const char *h = strcmp(cfg.host, "localhost") == 0 ? "127.0.0.1" : cfg.host;
  if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
    if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) return 0;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)cfg.port);
    *len = sizeof *a4;
    return 1;
  }
  if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) return 0;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)cfg.port);
    *len = sizeof *a6;
    return 1;
  }
  return 0;
}

static struct sockaddr_storage addr;
static socklen_t addr_len;

/* ---- completion */

static void finish(struct conn *c, int ok, const char *err) {
  double now = mono_us();
  c->inflight = 0;
  g_inflight--;
  timer_cancel(c);
  if (phase == PH_PREPARE) {
    if (ok && c->status != 200) {
      char m[64];
      snprintf(m, sizeof m, "status %d", c->status);
      pr.errors++;
      sample(pr.samples, &pr.nsamples, m);
    } else if (!ok) {
      pr.errors++;
      sample(pr.samples, &pr.nsamples, err);
    }
  } else if (phase == PH_RUN || phase == PH_DRAIN) {
    if (ok) {
      if (c->t0 >= win_start) {
        if (now > win_end) st.late++;
        else {
          if (c->resumed) st.resumed++;
          if (c->status >= 200 && c->status < 300) {
            st.ok++;
            st.bytes += (double)c->body;
            hist_record(now - c->t0);
          } else st.non2xx++;
        }
      }
    } else if (c->t0 >= win_start && now <= win_end) {
      st.errors++;
      sample(st.samples, &st.nsamples, err);
    }
  }
  if (!ok) {
    hard_close(c);
    /* a failing target must not turn this into a busy loop (load.ts waits 5 ms as well) */
    if (phase == PH_RUN) timer_set(c, now + 5000, T_AFTER_ERROR);
    else after_completion(c);
    return;
  }
  if (c->close_after || per_request_conn()) {
    if (cfg.mode == M_KEEPALIVE) closed_by_peer++;
    linger_close(c);
  } else {
    c->state = S_IDLE;
    set_ev(c, EPOLLIN);
  }
  after_completion(c);
}

static void fail(struct conn *c, const char *what, const char *detail) {
  char m[400];
  snprintf(m, sizeof m, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
  finish(c, 0, m);
}

static void fail_ssl(struct conn *c, const char *what, int e) {
  if (e == SSL_ERROR_SYSCALL) fail(c, what, errno ? strerror(errno) : "connection closed");
  else if (e == SSL_ERROR_ZERO_RETURN) fail(c, what, "connection closed");
  else fail(c, what, ssl_err());
}

/* ---- HTTP/1.1 response parser: status line, headers, Content-Length, chunked or until EOF */

static int head_parse(struct conn *c) {
  char *h = c->head, *end = c->head + c->hlen - 4;
  *end = 0; /* the blank line's first CR: the head is a C string now */
  if (strncmp(h, "HTTP/1.", 7) != 0 || c->hlen < 12) return -1;
  int minor = h[7] - '0';
  c->status = atoi(h + 9);
  if (c->status < 100 || c->status > 999) return -1;
  int chunked = 0, keepalive = 0, has_len = 0;
  long long len = 0;
  c->close_after = 0;
  for (char *l = strstr(h, "\r\n"); l; ) {
    l += 2;
    char *next = strstr(l, "\r\n");
    if (next) *next = 0;
    char *colon = strchr(l, ':');
    if (colon) {
      *colon = 0;
      char *v = colon + 1;
      while (*v == ' ' || *v == '\t') v++;
      if (!strcasecmp(l, "content-length")) {
        char *e;
        len = strtoll(v, &e, 10);
        if (e == v || len < 0) return -1;
        has_len = 1;
      } else if (!strcasecmp(l, "transfer-encoding")) {
        if (strcasestr(v, "chunked")) chunked = 1;
      } else if (!strcasecmp(l, "connection")) {
        if (strcasestr(v, "close")) c->close_after = 1;
        if (strcasestr(v, "keep-alive")) keepalive = 1;
      }
    }
    l = next;
  }
  if (minor == 0 && !keepalive) c->close_after = 1;
  if (c->stage == 0 && c->status >= 200 && c->status < 300) {
    /* the tunnel is up: a 2xx answer to CONNECT has no body, the destination's bytes follow */
    c->close_after = 0;
    c->ps = P_DONE;
    return 0;
  }
  if (c->status < 200) { /* 1xx: the real answer follows */
    c->hlen = 0;
    c->ps = P_HEAD;
    return 0;
  }
  if (c->status == 204 || c->status == 304) c->ps = P_DONE;
  else if (chunked) c->ps = P_CSIZE;
  else if (has_len) {
    c->rem = len;
    c->ps = len ? P_LEN : P_DONE;
  } else {
    c->ps = P_EOF;
    c->close_after = 1;
  }
  return 0;
}

/* 1: the answer is complete; 0: more to come; -1: not HTTP as we know it. */
static int parse(struct conn *c, const char *p, size_t n) {
  size_t i = 0;
  while (i < n && c->ps != P_DONE) {
    switch (c->ps) {
    case P_HEAD: {
      size_t take = n - i, room = HEAD_MAX - 1 - c->hlen;
      if (take > room) take = room;
      size_t from = c->hlen >= 3 ? c->hlen - 3 : 0;
      memcpy(c->head + c->hlen, p + i, take);
      c->hlen += take;
      char *e = memmem(c->head + from, c->hlen - from, "\r\n\r\n", 4);
      if (!e) {
        if (c->hlen >= HEAD_MAX - 1) return -1;
        i += take;
        break;
      }
      size_t hend = (size_t)(e - c->head) + 4;
      i += take - (c->hlen - hend); /* bytes after the head stay in p */
      c->hlen = hend;
      if (head_parse(c) < 0) return -1;
      break;
    }
    case P_LEN:
    case P_CDATA: {
      size_t take = n - i;
      if ((long long)take > c->rem) take = (size_t)c->rem;
      c->body += (long long)take;
      c->rem -= (long long)take;
      i += take;
      if (c->rem == 0) {
        c->ps = c->ps == P_LEN ? P_DONE : P_CCRLF;
        c->llen = 0;
      }
      break;
    }
    case P_EOF:
      c->body += (long long)(n - i);
      i = n;
      break;
    case P_CSIZE:
    case P_CCRLF:
    case P_CTRAIL: {
      char ch = p[i++];
      if (ch != '\n') {
        if (c->llen >= sizeof c->line - 1) {
          if (c->ps == P_CSIZE) return -1;
        } else c->line[c->llen++] = ch;
        break;
      }
      if (c->llen && c->line[c->llen - 1] == '\r') c->llen--;
      c->line[c->llen] = 0;
      size_t was = c->llen;
      c->llen = 0;
      if (c->ps == P_CCRLF) c->ps = P_CSIZE;
      else if (c->ps == P_CTRAIL) {
        if (was == 0) c->ps = P_DONE;
      } else {
        char *e;
        unsigned long long size = strtoull(c->line, &e, 16);
        if (e == c->line) return -1;
        if (size == 0) c->ps = P_CTRAIL;
        else {
          c->rem = (long long)size;
          c->ps = P_CDATA;
        }
      }
      break;
    }
    }
  }
  return c->ps == P_DONE;
}

/* ---- the connection's state machine */

static void open_conn(struct conn *c) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(c, "socket", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  c->resumed = 0;
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) return fail(c, "epoll_ctl", strerror(errno));
  c->ev = EPOLLOUT;
  c->state = S_CONNECTING;
  if (connect(fd, (struct sockaddr *)&addr, addr_len) != 0 && errno != EINPROGRESS)
    return fail(c, "connect", strerror(errno));
  drive(c);
}

static void start_tls(struct conn *c) {
  c->ssl = SSL_new(ctx);
  if (!c->ssl) return fail(c, "SSL_new", ssl_err());
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  SSL_set_tlsext_host_name(c->ssl, cfg.servername);
  SSL_set1_host(c->ssl, cfg.servername);
  if (cfg.nids > 1) {
    struct ident *id = &ids[c->ident];
    if (SSL_use_cert_and_key(c->ssl, id->cert, id->key, id->chain, 1) != 1) return fail(c, "client certificate", ssl_err());
  }
  c->state = S_HANDSHAKE;
}

static void drive(struct conn *c) {
  for (;;) {
    switch (c->state) {
    case S_IDLE: {
      /* a keep-alive connection between requests: only the peer's close (or a stray TLS record) */
      if (c->fd < 0 || !c->ssl) return;
      ERR_clear_error();
      int r = SSL_read(c->ssl, rbuf, sizeof rbuf);
      if (r > 0) continue;
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return set_ev(c, EPOLLIN);
      if (e == SSL_ERROR_WANT_WRITE) return set_ev(c, EPOLLIN | EPOLLOUT);
      closed_by_peer++;
      hard_close(c);
      ERR_clear_error();
      return;
    }
    case S_CONNECTING: {
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err) return fail(c, "connect", strerror(err));
      struct sockaddr_storage peer;
      socklen_t pl = sizeof peer;
      if (getpeername(c->fd, (struct sockaddr *)&peer, &pl) != 0) return; /* still connecting */
      start_tls(c);
      if (!c->ssl) return;
      continue;
    }
    case S_HANDSHAKE: {
      ERR_clear_error();
      errno = 0;
      int r = SSL_do_handshake(c->ssl);
      if (r == 1) {
        c->resumed = SSL_session_reused(c->ssl);
        c->state = S_SEND;
        c->wpos = 0;
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return set_ev(c, EPOLLIN);
      if (e == SSL_ERROR_WANT_WRITE) return set_ev(c, EPOLLIN | EPOLLOUT);
      return fail_ssl(c, "TLS handshake", e);
    }
    case S_SEND: {
      const char *out = c->stage == 0 ? creq : req;
      size_t out_len = c->stage == 0 ? creq_len : req_len;
      ERR_clear_error();
      errno = 0;
      int r = SSL_write(c->ssl, out + c->wpos, (int)(out_len - c->wpos));
      if (r > 0) {
        c->wpos += (size_t)r;
        if (c->wpos < out_len) continue;
        c->state = S_READ;
        set_ev(c, EPOLLIN);
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return set_ev(c, EPOLLIN);
      if (e == SSL_ERROR_WANT_WRITE) return set_ev(c, EPOLLIN | EPOLLOUT);
      return fail_ssl(c, "write", e);
    }
    case S_READ: {
      ERR_clear_error();
      errno = 0;
      int r = SSL_read(c->ssl, rbuf, sizeof rbuf);
      if (r > 0) {
        int p = parse(c, rbuf, (size_t)r);
        if (p < 0) return fail(c, "bad response", NULL);
        if (p == 1 && c->stage == 0 && c->status >= 200 && c->status < 300) {
          /* tunnel established: the request goes through it (nothing else is sent before it) */
          c->stage = 1;
          c->ps = P_HEAD;
          c->hlen = c->llen = 0;
          c->rem = c->body = 0;
          c->status = 0;
          c->wpos = 0;
          c->state = S_SEND;
          continue;
        }
        if (p == 1) return finish(c, 1, NULL);
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return set_ev(c, EPOLLIN);
      if (e == SSL_ERROR_WANT_WRITE) return set_ev(c, EPOLLIN | EPOLLOUT);
      if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0 && errno == 0)) {
        if (c->ps == P_EOF) return finish(c, 1, NULL);
        return fail(c, c->hlen == 0 ? "socket hang up (closed before the answer)" : "closed in the middle of the answer", NULL);
      }
      return fail_ssl(c, "read", e);
    }
    }
  }
}

static void start_request(struct conn *c, double t0) {
  double now = mono_us();
  timer_cancel(c);
  c->inflight = 1;
  g_inflight++;
  c->t0 = t0;
  c->tstart = now;
  c->ps = P_HEAD;
  c->hlen = c->llen = 0;
  c->rem = c->body = 0;
  c->status = 0;
  c->close_after = 0;
  c->wpos = 0;
  c->stage = cfg.mode == M_TUNNEL ? 0 : 1;
  if (per_request_conn()) {
    c->ident = (int)(hs_next++ % (unsigned long long)cfg.nids);
    if (c->fd >= 0) hard_close(c);
  }
  if (c->fd < 0) return open_conn(c);
  c->state = S_SEND;
  drive(c);
}

/* ---- the loops */

enum { L_CLOSED, L_POOL, L_RATE };
static double interval_us;

static int loop_kind(void) {
  if (per_request_conn()) return L_CLOSED;
  if (cfg.rate > 0) return L_RATE;
  if (cfg.concurrency >= cfg.connections) return L_CLOSED;
  return L_POOL;
}

static void emit_prepared(void);

static void after_completion(struct conn *c) {
  double now = mono_us();
  if (phase == PH_PREPARE) {
    pr.done++;
    if (pr.started < pr.total) {
      struct conn *n = &conns[pr.started++];
      start_request(n, mono_us());
    } else if (pr.done == pr.total) emit_prepared();
    return;
  }
  if (phase != PH_RUN || now >= win_end) return;
  switch (loop_kind()) {
  case L_CLOSED:
    start_request(c, now);
    break;
  case L_POOL: {
    q[(qhead + qlen) % nconns] = c->idx;
    qlen++;
    struct conn *n = &conns[q[qhead]];
    qhead = (qhead + 1) % nconns;
    qlen--;
    start_request(n, now);
    break;
  }
  case L_RATE:
    c->next_sched += interval_us;
    if (c->next_sched >= win_end) break;
    /* behind: the wait is the server's, count from the schedule; ahead: wait, count from the start */
    if (now >= c->next_sched) start_request(c, c->next_sched);
    else timer_set(c, c->next_sched, T_START);
    break;
  }
}

static void on_timer(struct conn *c, int a) {
  double now = mono_us();
  if (a == T_AFTER_ERROR) after_completion(c);
  else if (a == T_START && phase == PH_RUN && now < win_end) start_request(c, now);
}

/* ---- commands */

static void emit_prepared(void) {
  struct sb b = {0};
  int open = per_request_conn() ? 0 : pr.total - pr.errors;
  sb_add(&b, "{\"type\":\"prepared\",\"open\":%d,\"errors\":%d,\"errorSamples\":[", open, pr.errors);
  for (int i = 0; i < pr.nsamples; i++) {
    if (i) sb_add(&b, ",");
    sb_json_str(&b, pr.samples[i]);
  }
  sb_add(&b, "],\"ms\":%.1f}", (mono_us() - pr.t0) / 1e3);
  emit(&b);
  phase = PH_IDLE;
  closed_by_peer = 0;
}

static void cmd_prepare(void) {
  memset(&pr, 0, sizeof pr);
  pr.t0 = mono_us();
  phase = PH_PREPARE;
  /* handshake: one request on a new connection checks the way through; keepalive: open them all */
  pr.total = per_request_conn() ? 1 : nconns;
  hs_next = (unsigned long long)cfg.offset;
  int width = cfg.open_concurrency < pr.total ? cfg.open_concurrency : pr.total;
  while (pr.started < width && phase == PH_PREPARE) {
    struct conn *c = &conns[pr.started++];
    start_request(c, mono_us());
  }
}

static void cmd_run(double start_ms, double end_ms) {
  double now = mono_us(), ep_now = epoch_ms();
  win_start = now + (start_ms - ep_now) * 1e3;
  win_end = now + (end_ms - ep_now) * 1e3;
  win_ms = end_ms - start_ms;
  memset(&st, 0, sizeof st);
  hist_reset();
  getrusage(RUSAGE_SELF, &ru0);
  phase = PH_RUN;
  hs_next = (unsigned long long)cfg.offset;
  int active = per_request_conn() ? cfg.concurrency : nconns;
  switch (loop_kind()) {
  case L_CLOSED:
    for (int i = 0; i < active && now < win_end; i++) start_request(&conns[i], mono_us());
    break;
  case L_POOL:
    qhead = 0;
    qlen = 0;
    for (int i = 0; i < nconns; i++) q[qlen++] = i;
    for (int i = 0; i < cfg.concurrency && qlen; i++) {
      struct conn *c = &conns[q[qhead]];
      qhead = (qhead + 1) % nconns;
      qlen--;
      start_request(c, mono_us());
    }
    break;
  case L_RATE:
    interval_us = 1e6 * nconns / cfg.rate;
    for (int i = 0; i < nconns; i++) {
      struct conn *c = &conns[i];
      c->next_sched = now + i * interval_us / nconns;
      if (c->next_sched >= win_end) continue;
      if (mono_us() >= c->next_sched) start_request(c, c->next_sched);
      else timer_set(c, c->next_sched, T_START);
    }
    break;
  }
}

static void emit_result(void) {
  struct rusage ru1;
  getrusage(RUSAGE_SELF, &ru1);
  double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e6 + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
               (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6 + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
  struct sb b = {0};
  sb_add(&b, "{\"type\":\"result\",\"gen\":\"c\",\"ok\":%lld,\"non2xx\":%lld,\"errors\":%lld,\"errorSamples\":[", st.ok, st.non2xx, st.errors);
  for (int i = 0; i < st.nsamples; i++) {
    if (i) sb_add(&b, ",");
    sb_json_str(&b, st.samples[i]);
  }
  sb_add(&b, "],\"bytes\":%.0f,\"late\":%lld,\"resumed\":%lld,\"latency\":{\"counts\":[", st.bytes, st.late, st.resumed);
  int last = NBUCKETS - 1;
  while (last > 0 && hist.counts[last] == 0) last--;
  for (int i = 0; i <= last; i++) sb_add(&b, i ? ",%.0f" : "%.0f", hist.counts[i]);
  sb_add(&b, "],\"n\":%.0f,\"min\":%.3f,\"max\":%.3f,\"sum\":%.3f},\"windowMs\":%.3f,\"cpuUs\":%.0f}", hist.n, hist.n ? hist.min : 0.0, hist.max, hist.sum, win_ms, cpu);
  emit(&b);
  phase = PH_IDLE;
}

static void check_drain(double now) {
  if (phase == PH_RUN && now >= win_end) {
    phase = PH_DRAIN;
    double grace = cfg.timeout_us < 3e6 ? cfg.timeout_us : 3e6;
    drain_deadline = win_end + grace;
  }
  if (phase != PH_DRAIN) return;
  if (g_inflight > 0 && now < drain_deadline) return;
  /* what is still in flight ended after the window: late (if it started inside), and closed */
  for (int i = 0; i < nconns; i++) {
    struct conn *c = &conns[i];
    timer_cancel(c);
    if (!c->inflight) continue;
    if (c->t0 >= win_start) st.late++;
    c->inflight = 0;
    g_inflight--;
    hard_close(c);
  }
  emit_result();
}

static void cmd_status(void) {
  struct sb b = {0};
  long long open = 0;
  for (int i = 0; i < nconns; i++) open += conns[i].fd >= 0;
  sb_add(&b, "{\"type\":\"status\",\"open\":%lld,\"closedByPeer\":%lld}", open, closed_by_peer);
  emit(&b);
}

static void cmd_close(void) {
  for (int i = 0; i < nconns; i++) hard_close(&conns[i]);
  while (lingers) linger_free(lingers);
  exit(0);
}

static char cmdbuf[4096];
static size_t cmdlen;

static void stdin_event(void) {
  for (;;) {
    ssize_t k = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (k == 0) exit(0); /* the parent is gone */
    if (k < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      exit(0);
    }
    cmdlen += (size_t)k;
    char *nl;
    while ((nl = memchr(cmdbuf, '\n', cmdlen)) != NULL) {
      *nl = 0;
      double a = 0, b = 0;
      if (!strcmp(cmdbuf, "prepare")) cmd_prepare();
      else if (sscanf(cmdbuf, "run %lf %lf", &a, &b) == 2) cmd_run(a, b);
      else if (!strcmp(cmdbuf, "status")) cmd_status();
      else if (!strcmp(cmdbuf, "close")) cmd_close();
      size_t used = (size_t)(nl - cmdbuf) + 1;
      memmove(cmdbuf, nl + 1, cmdlen - used);
      cmdlen -= used;
    }
    if (cmdlen >= sizeof cmdbuf - 1) cmdlen = 0;
  }
}

/* ------------------------------------------------------------------ main loop */

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  double born = mono_us();
  pid_t parent = getppid();
  read_config(argv[1]);
  if (!loopback(&addr, &addr_len)) die("host %s: only loopback addresses", cfg.host);
  hist_init();
  hist_reset();
  setup_tls();
  const char *how = per_request_conn() ? "close" : "keep-alive";
  char host[320];
  if (cfg.host_header[0]) snprintf(host, sizeof host, "%s", cfg.host_header);
  else if (cfg.mode == M_TUNNEL) snprintf(host, sizeof host, "%s", cfg.connect_to);
  else snprintf(host, sizeof host, "%s:%d", cfg.servername, cfg.port);
  int rl = snprintf(NULL, 0, "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: broker-bench\r\nConnection: %s\r\n\r\n", cfg.path, host, how);
  req = xcalloc((size_t)rl + 1, 1);
  snprintf(req, (size_t)rl + 1, "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: broker-bench\r\nConnection: %s\r\n\r\n", cfg.path, host, how);
  req_len = (size_t)rl;
  if (cfg.mode == M_TUNNEL) {
    int cl = snprintf(NULL, 0, "CONNECT %s HTTP/1.1\r\nhost: %s\r\nuser-agent: broker-bench\r\n\r\n", cfg.connect_to, cfg.connect_to);
    creq = xcalloc((size_t)cl + 1, 1);
    snprintf(creq, (size_t)cl + 1, "CONNECT %s HTTP/1.1\r\nhost: %s\r\nuser-agent: broker-bench\r\n\r\n", cfg.connect_to, cfg.connect_to);
    creq_len = (size_t)cl;
  }

  nconns = per_request_conn() ? cfg.concurrency : cfg.connections;
  conns = xcalloc((size_t)nconns, sizeof *conns);
  heap = xcalloc((size_t)nconns, sizeof *heap);
  q = xcalloc((size_t)nconns, sizeof *q);
  for (int i = 0; i < nconns; i++) {
    conns[i].kind = K_CONN;
    conns[i].idx = i;
    conns[i].fd = -1;
    conns[i].hidx = -1;
    conns[i].ident = (cfg.offset + i) % cfg.nids;
  }

  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1: %s", strerror(errno));
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event se = {.events = EPOLLIN, .data.ptr = &stdin_kind};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &se); /* not a pipe (/dev/null): the parent check below suffices */

  struct sb b = {0};
  sb_add(&b, "{\"type\":\"hello\",\"pid\":%d,\"gen\":\"c\",\"openssl\":", (int)getpid());
  sb_json_str(&b, OpenSSL_version(OPENSSL_VERSION));
  sb_add(&b, ",\"fastCertDecode\":%s,\"verifyCache\":%s}", shortcut_decode ? "true" : "false", shortcut_verify ? "true" : "false");
  emit(&b);

  struct epoll_event evs[256];
  double next_check = 0;
  int have_pwait2 = 1;
  for (;;) {
    double now = mono_us();
    double wake = now + 100e3;
    if (hn && heap[0]->due < wake) wake = heap[0]->due;
    if (phase == PH_RUN && win_end < wake) wake = win_end;
    if (phase == PH_DRAIN && drain_deadline < wake) wake = drain_deadline;
    double wait = wake - now;
    if (wait < 0) wait = 0;
    int n;
    if (have_pwait2) {
      struct timespec ts = {.tv_sec = (time_t)(wait / 1e6), .tv_nsec = (long)(fmod(wait, 1e6) * 1e3)};
      n = epoll_pwait2(ep, evs, 256, &ts, NULL);
      if (n < 0 && errno == ENOSYS) {
        have_pwait2 = 0;
        continue;
      }
    } else n = epoll_wait(ep, evs, 256, (int)ceil(wait / 1e3));
    if (n < 0 && errno != EINTR) die("epoll: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      int kind = *(int *)evs[i].data.ptr;
      if (kind == K_STDIN) stdin_event();
      else if (kind == K_LINGER) {
        struct lingerer *l = evs[i].data.ptr;
        if (l->fd >= 0) linger_event(l);
      } else {
        struct conn *c = evs[i].data.ptr;
        if (c->fd >= 0) drive(c);
      }
    }
    now = mono_us();
    while (hn && heap[0]->due <= now) {
      struct conn *c = heap[0];
      int action = c->taction;
      timer_cancel(c);
      on_timer(c, action);
      now = mono_us();
    }
    check_drain(now);
    if (now >= next_check) {
      next_check = now + 100e3;
      if ((now - born) / 1e3 > cfg.max_life_ms) exit(2);
      if (getppid() != parent) exit(0);
      for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->inflight && now - c->tstart > cfg.timeout_us) fail(c, "request timeout", NULL);
      }
      for (struct lingerer *l = lingers, *nx; l; l = nx) {
        nx = l->next;
        if (now - l->since > 1e6) linger_free(l);
      }
    }
  }
}
