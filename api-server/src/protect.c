#include "protect.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_util.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"
#include "store.h"
#include "trust.h"

#define AGENT_LEN STEMEDB_AGENT_ID_LEN

/* Stored breaker value: version, state, banned flag, open-until (Unix ms, u64 BE),
 * reason length (u16 BE), reason. */
#define BREAKER_RECORD_VERSION 1
#define BREAKER_KEY_KIND       'b'

/* Largest number of 'a' view keys read to count one agent's assertions. It is well
 * above every difficulty threshold, so a capped count never changes a difficulty. */
#define COUNT_SCAN_MAX 1000000

/* Logged 428 replies per second; clients without a solver send many. */
#define POW_LOGS_PER_SECOND 10

struct count_entry {
	struct count_entry *next;
	uint8_t agent[AGENT_LEN];
	uint64_t count;
	uint64_t loaded_at; /* Unix seconds */
};

/* Cache of stored assertions per agent. Counting the view keys of a busy agent is a
 * long scan, so counts are kept and raised by the writes of this node. A count older
 * than count_cache_seconds is read again, to include assertions that arrived by other
 * paths such as replication. */
struct count_cache {
	pthread_mutex_t lock;
	struct count_entry **buckets;
	size_t bucket_mask;
	size_t count;
	size_t max_entries;
};

struct protect {
	struct protect_config config;
	struct store *store;
	struct breaker_table *breakers;
	struct pow_replay_set *replays;
	struct quota_table *quotas;
	struct count_cache counts;
};

static struct {
	struct metric *open;               /* stemedb_circuit_breakers_open */
	struct metric *state[3];           /* stemedb_circuit_breaker_state{state} */
	struct metric *transitions_opened; /* stemedb_circuit_breaker_opened_total */
	struct metric *store_failures;     /* stemedb_protect_store_errors_total */
} protect_metrics;

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put_u64_be(uint8_t *out, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t get_u64_be(const uint8_t *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | in[i];
	return v;
}

/* ---- stored breakers ---- */

static void breaker_key(const uint8_t *agent, uint8_t key[1 + AGENT_LEN])
{
	key[0] = BREAKER_KEY_KIND;
	memcpy(key + 1, agent, AGENT_LEN);
}

static bool breaker_persist(struct protect *p, const struct breaker_snapshot *snap)
{
	uint8_t key[1 + AGENT_LEN];
	uint8_t value[3 + 8 + 2 + BREAKER_REASON_MAX];
	size_t reason_len = strlen(snap->reason);
	char agent_hex[2 * AGENT_LEN + 1];
	enum store_result rc;

	breaker_key(snap->agent, key);
	hex_encode(snap->agent, AGENT_LEN, agent_hex);
	if (snap->state == BREAKER_CLOSED) {
		rc = store_protect_delete(p->store, key, sizeof(key));
	} else {
		value[0] = BREAKER_RECORD_VERSION;
		value[1] = (uint8_t)snap->state;
		value[2] = snap->banned ? 1 : 0;
		put_u64_be(value + 3, snap->open_until_ms);
		value[11] = (uint8_t)(reason_len >> 8);
		value[12] = (uint8_t)(reason_len & 0xff);
		memcpy(value + 13, snap->reason, reason_len);
		rc = store_protect_put(p->store, key, sizeof(key), value, 13 + reason_len);
	}
	if (rc != STORE_OK) {
		metric_inc(protect_metrics.store_failures);
		log_error(
		        "storing the circuit breaker of agent %s (%s) failed; it is kept in memory "
		        "only until the next restart",
		        agent_hex, breaker_state_name(snap->state));
		return false;
	}
	return true;
}

struct breaker_load {
	struct protect *p;
	size_t loaded;
	size_t invalid;
};

static bool load_breaker(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                         size_t value_len)
{
	struct breaker_load *load = ctx;
	struct breaker_snapshot snap;
	size_t reason_len;

	memset(&snap, 0, sizeof(snap));
	reason_len = value_len >= 13 ? ((size_t)value[11] << 8) | value[12] : 0;
	if (key_len != 1 + AGENT_LEN || value_len < 13 || value[0] != BREAKER_RECORD_VERSION ||
	    value[1] > BREAKER_HALF_OPEN || reason_len > BREAKER_REASON_MAX ||
	    value_len != 13 + reason_len) {
		load->invalid++;
		return true;
	}
	memcpy(snap.agent, key + 1, AGENT_LEN);
	snap.state = (enum breaker_state)value[1];
	snap.banned = value[2] != 0;
	snap.open_until_ms = get_u64_be(value + 3);
	memcpy(snap.reason, value + 13, reason_len);
	breaker_restore(load->p->breakers, &snap);
	load->loaded++;
	return true;
}

/* ---- assertion counts ---- */

static size_t count_bucket(const struct count_cache *c, const uint8_t *agent)
{
	uint64_t h;

	memcpy(&h, agent, sizeof(h));
	return (size_t)h & c->bucket_mask;
}

static void count_cache_init(struct count_cache *c, size_t max_entries)
{
	size_t buckets = 64;

	while (buckets < max_entries && buckets < (1u << 20))
		buckets *= 2;
	c->buckets = calloc(buckets, sizeof(*c->buckets));
	if (c->buckets == NULL)
		abort();
	c->bucket_mask = buckets - 1;
	c->max_entries = max_entries;
	pthread_mutex_init(&c->lock, NULL);
}

static void count_cache_clear(struct count_cache *c)
{
	for (size_t i = 0; i <= c->bucket_mask; i++) {
		struct count_entry *e = c->buckets[i];

		while (e != NULL) {
			struct count_entry *next = e->next;

			free(e);
			e = next;
		}
		c->buckets[i] = NULL;
	}
	c->count = 0;
}

static struct count_entry *count_find(struct count_cache *c, const uint8_t *agent)
{
	for (struct count_entry *e = c->buckets[count_bucket(c, agent)]; e != NULL; e = e->next) {
		if (memcmp(e->agent, agent, AGENT_LEN) == 0)
			return e;
	}
	return NULL;
}

static bool count_view_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                           size_t value_len)
{
	uint64_t *count = ctx;

	(void)key;
	(void)key_len;
	(void)value;
	(void)value_len;
	return ++*count < COUNT_SCAN_MAX;
}

/* Returns the agent's stored assertions (capped at COUNT_SCAN_MAX), from the cache
 * when it is recent enough. */
static enum store_result agent_assertions(struct protect *p, const uint8_t *agent, uint64_t now,
                                          uint64_t *out)
{
	struct count_cache *c = &p->counts;
	struct count_entry *e;
	uint8_t prefix[1 + AGENT_LEN];
	struct store_scan scan = {
	        .family = STORE_INDEX_VIEWS, .prefix = prefix, .prefix_len = sizeof(prefix)};
	uint64_t count = 0;
	enum store_result rc;
	size_t bucket;

	pthread_mutex_lock(&c->lock);
	e = count_find(c, agent);
	if (e != NULL && e->loaded_at + p->config.count_cache_seconds > now) {
		*out = e->count;
		pthread_mutex_unlock(&c->lock);
		return STORE_OK;
	}
	pthread_mutex_unlock(&c->lock);

	prefix[0] = STORE_VIEW_AGENT;
	memcpy(prefix + 1, agent, AGENT_LEN);
	rc = store_index_scan(p->store, &scan, count_view_key, &count);
	if (rc != STORE_OK)
		return rc;

	pthread_mutex_lock(&c->lock);
	e = count_find(c, agent);
	if (e == NULL) {
		if (c->count >= c->max_entries)
			count_cache_clear(c);
		e = calloc(1, sizeof(*e));
		if (e == NULL)
			abort();
		memcpy(e->agent, agent, AGENT_LEN);
		bucket = count_bucket(c, agent);
		e->next = c->buckets[bucket];
		c->buckets[bucket] = e;
		c->count++;
	}
	e->count = count;
	e->loaded_at = now;
	pthread_mutex_unlock(&c->lock);
	*out = count;
	return STORE_OK;
}

void protect_assertion_stored(struct protect *p, const uint8_t (*signers)[32], size_t count)
{
	if (p == NULL || !p->config.admission_enabled)
		return;
	pthread_mutex_lock(&p->counts.lock);
	for (size_t i = 0; i < count; i++) {
		struct count_entry *e = count_find(&p->counts, signers[i]);

		if (e != NULL)
			e->count++;
	}
	pthread_mutex_unlock(&p->counts.lock);
}

/* ---- lifecycle and metrics ---- */

struct protect *protect_open(const struct protect_config *cfg, struct store *store, char *err,
                             size_t err_size)
{
	struct protect *p = calloc(1, sizeof(*p));
	struct breaker_config bc = {.failure_threshold = cfg->breaker_failures,
	                            .window_ms = cfg->breaker_window_seconds * 1000,
	                            .open_ms = cfg->breaker_open_seconds * 1000,
	                            .max_agents = cfg->breaker_max_agents};
	struct breaker_load load = {.p = p};
	uint8_t prefix = BREAKER_KEY_KIND;

	if (p == NULL)
		abort();
	p->config = *cfg;
	p->store = store;
	p->breakers = breaker_table_new(&bc);
	p->replays = pow_replay_set_new(cfg->pow_replay_capacity);
	p->quotas = quota_table_new(cfg->quota_window_seconds, cfg->quota_max_agents);
	count_cache_init(&p->counts, cfg->breaker_max_agents);

	if (store_protect_scan(store, &prefix, 1, load_breaker, &load) != STORE_OK) {
		snprintf(err, err_size,
		         "reading the stored circuit breakers (column family \"protect\", kind "
		         "'b') failed; see the RocksDB message above");
		protect_close(p);
		return NULL;
	}
	if (load.invalid > 0)
		log_warn("ignored %zu stored circuit breakers with an unknown layout",
		         load.invalid);
	log_info("protection: circuit breaker %s (%zu stored breakers loaded), admission %s, "
	         "quota %s",
	         cfg->breaker_enabled ? "on" : "off", load.loaded,
	         cfg->admission_enabled ? "on" : "off", cfg->quota_enabled ? "on" : "off");
	return p;
}

void protect_close(struct protect *p)
{
	if (p == NULL)
		return;
	breaker_table_free(p->breakers);
	pow_replay_set_free(p->replays);
	quota_table_free(p->quotas);
	count_cache_clear(&p->counts);
	free(p->counts.buckets);
	pthread_mutex_destroy(&p->counts.lock);
	free(p);
}

bool protect_any_enabled(const struct protect *p)
{
	return p != NULL && (p->config.breaker_enabled || p->config.admission_enabled ||
	                     p->config.quota_enabled);
}

void protect_register_metrics(void)
{
	static const char *const state_labels[] = {"state", NULL};
	struct metric_family *states;

	protect_metrics.open = metrics_gauge(
	        "stemedb_circuit_breakers_open",
	        "Agents whose circuit breaker is open (banned agents included) right now");
	states = metrics_gauge_family("stemedb_circuit_breaker_state",
	                              "Tracked circuit breakers by state", state_labels);
	for (int s = BREAKER_CLOSED; s <= BREAKER_HALF_OPEN; s++) {
		const char *value[] = {breaker_state_name((enum breaker_state)s)};

		protect_metrics.state[s] = metrics_family_child(states, value);
	}
	protect_metrics.transitions_opened =
	        metrics_counter("stemedb_circuit_breaker_opened_total",
	                        "Times a circuit breaker opened after failures or a ban");
	protect_metrics.store_failures = metrics_counter(
	        "stemedb_protect_store_errors_total",
	        "Failed writes of protection state to the \"protect\" column family");
}

void protect_refresh_metrics(struct protect *p)
{
	uint64_t counts[3];

	if (p == NULL || protect_metrics.open == NULL)
		return;
	breaker_count_states(p->breakers, wall_ms(), counts);
	metric_set(protect_metrics.open, (double)counts[BREAKER_OPEN]);
	for (int s = BREAKER_CLOSED; s <= BREAKER_HALF_OPEN; s++)
		metric_set(protect_metrics.state[s], (double)counts[s]);
}

/* ---- HTTP hooks ---- */

static void add_header(struct http_call *call, const char *name, uint64_t value)
{
	char text[32];

	snprintf(text, sizeof(text), "%" PRIu64, value);
	evhttp_add_header(evhttp_request_get_output_headers(call->req), name, text);
}

/* Returns true for the first POW_LOGS_PER_SECOND 428 replies of each second; the rest
 * are only counted in stemedb_requests_rejected_total. */
static bool pow_log_allowed(void)
{
	static _Atomic uint64_t second;
	static atomic_uint count;
	uint64_t now = (uint64_t)time(NULL);
	uint64_t seen = atomic_load(&second);

	if (seen != now && atomic_compare_exchange_strong(&second, &seen, now))
		atomic_store(&count, 0);
	return atomic_fetch_add(&count, 1) < POW_LOGS_PER_SECOND;
}

/* Sends a 428 whose body also carries the difficulty that a proof must meet. */
static void reply_pow_error(struct http_call *call, const char *code, const char *field,
                            unsigned difficulty, const char *message)
{
	struct json_writer w;
	struct buf body;
	char agent_hex[2 * AGENT_LEN + 1];

	hex_encode(call->agent, AGENT_LEN, agent_hex);
	snprintf(call->error_code, sizeof(call->error_code), "%s", code);
	http_count_rejection(code);
	if (pow_log_allowed())
		log_info("%s %s -> 428 %s for agent %s (difficulty %u): %s", call->method_name,
		         call->path, code, agent_hex, difficulty, message);
	add_header(call, "X-PoW-Difficulty", difficulty);
	http_reply_begin(&body, &w);
	json_writer_object_begin(&w);
	json_writer_key(&w, "error");
	http_write_error_object(&w, code, field, message);
	json_writer_key(&w, "difficulty");
	json_writer_uint(&w, difficulty);
	json_writer_object_end(&w);
	http_reply_text(call, 428, &body);
}

bool protect_http_identify(struct http_call *call, struct protect_route route)
{
	const char *header =
	        evhttp_find_header(evhttp_request_get_input_headers(call->req), "X-Agent-Id");
	bool lowercase_hex;

	if (header == NULL || route.cls == PROTECT_NONE)
		return true;
	lowercase_hex = strlen(header) == 2 * AGENT_LEN;
	for (size_t i = 0; lowercase_hex && header[i] != '\0'; i++)
		lowercase_hex = (header[i] >= '0' && header[i] <= '9') ||
		                (header[i] >= 'a' && header[i] <= 'f');
	if (!lowercase_hex || !hex_decode(header, 2 * AGENT_LEN, call->agent, AGENT_LEN)) {
		http_reply_error(call, 400, "invalid_header", "X-Agent-Id",
		                 "X-Agent-Id '%.80s' is not an agent id; send the 64 lowercase hex "
		                 "characters of the agent's Ed25519 public key.",
		                 header);
		return false;
	}
	call->agent_known = true;
	call->agent_from_header = true;
	return true;
}

/* Checks the agent's circuit breaker; replies 429 and returns false when it is open. */
static bool breaker_gate(struct http_call *call)
{
	struct protect *p = call->state->protect;
	uint64_t retry_ms = 0;
	enum breaker_verdict verdict;
	char agent_hex[2 * AGENT_LEN + 1];
	uint64_t retry_seconds;

	if (!p->config.breaker_enabled)
		return true;
	verdict = breaker_check(p->breakers, call->agent, wall_ms(), &retry_ms);
	if (verdict == BREAKER_ALLOW)
		return true;

	retry_seconds = (retry_ms + 999) / 1000;
	hex_encode(call->agent, AGENT_LEN, agent_hex);
	add_header(call, "Retry-After", retry_seconds);
	evhttp_add_header(evhttp_request_get_output_headers(call->req), "x-circuit-breaker-state",
	                  "OPEN");
	if (verdict == BREAKER_REJECT_BANNED)
		http_reply_error(
		        call, 429, "circuit_banned", NULL,
		        "Agent %s is banned by an administrator for %" PRIu64
		        " more seconds; retry after Retry-After or ask an administrator to "
		        "reset its circuit breaker.",
		        agent_hex, retry_seconds);
	else
		http_reply_error(call, 429, "circuit_open", NULL,
		                 "The circuit breaker of agent %s is open after repeated failed "
		                 "requests; fix the requests and retry after %" PRIu64 " seconds.",
		                 agent_hex, retry_seconds);
	return false;
}

/* Reads the agent's trust; replies 500 and returns false on a storage error. */
static bool agent_trust(struct http_call *call, uint64_t now, double *trust)
{
	struct trust_summary summary;

	if (trust_of_agent(call->state->store, call->agent, now, &summary) != STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading the trust of the requesting agent failed; see the server "
		                 "log and retry.");
		return false;
	}
	*trust = summary.trust;
	return true;
}

static bool parse_pow_header(struct http_call *call, const char *name, uint64_t *out,
                             unsigned difficulty, bool *present)
{
	const char *text = evhttp_find_header(evhttp_request_get_input_headers(call->req), name);
	char message[256];

	*present = text != NULL;
	if (text == NULL)
		return true;
	if (!http_parse_u64(text, 0, UINT64_MAX, out)) {
		snprintf(message, sizeof(message),
		         "%s '%.40s' is not a decimal unsigned 64-bit integer; send the nonce and "
		         "the Unix seconds that the proof hashed.",
		         name, text);
		reply_pow_error(call, "invalid_proof_of_work", name, difficulty, message);
		return false;
	}
	return true;
}

/* Checks the proof of work that the agent's difficulty requires; replies 428 and
 * returns false when it is missing, stale, too weak or used before. */
static bool admission_gate(struct http_call *call, uint64_t now, double trust)
{
	struct protect *p = call->state->protect;
	uint64_t count = 0, nonce = 0, timestamp = 0, age;
	bool has_nonce = false, has_timestamp = false;
	uint8_t digest[POW_DIGEST_LEN];
	unsigned difficulty;
	char message[300];

	if (agent_assertions(p, call->agent, now, &count) != STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Counting the assertions of the requesting agent failed; see the "
		                 "server log and retry.");
		return false;
	}
	difficulty = admission_difficulty(&p->config.rules, count, trust);
	if (difficulty == 0)
		return true;

	if (!parse_pow_header(call, "X-PoW-Nonce", &nonce, difficulty, &has_nonce) ||
	    !parse_pow_header(call, "X-PoW-Timestamp", &timestamp, difficulty, &has_timestamp))
		return false;
	if (!has_nonce || !has_timestamp) {
		snprintf(message, sizeof(message),
		         "This agent (%" PRIu64
		         " stored assertions, trust %.2f) must send a proof of "
		         "work with %u leading zero bits in X-PoW-Nonce and X-PoW-Timestamp; see "
		         "docs/formats.md.",
		         count, trust, difficulty);
		reply_pow_error(call, "proof_of_work_required",
		                has_nonce ? "X-PoW-Timestamp" : "X-PoW-Nonce", difficulty, message);
		return false;
	}

	age = timestamp > now ? timestamp - now : now - timestamp;
	if (age > p->config.pow_validity_seconds) {
		snprintf(message, sizeof(message),
		         "X-PoW-Timestamp %" PRIu64 " is %" PRIu64 " seconds from the server time "
		         "%" PRIu64 ", more than %" PRIu64 "; compute a new proof with the current "
		         "time.",
		         timestamp, age, now, p->config.pow_validity_seconds);
		reply_pow_error(call, "invalid_proof_of_work", "X-PoW-Timestamp", difficulty,
		                message);
		return false;
	}

	pow_digest(nonce, call->agent, timestamp, digest);
	if (pow_leading_zero_bits(digest) < difficulty) {
		snprintf(message, sizeof(message),
		         "The proof has %u leading zero bits, fewer than the %u required; search "
		         "another nonce.",
		         pow_leading_zero_bits(digest), difficulty);
		reply_pow_error(call, "invalid_proof_of_work", "X-PoW-Nonce", difficulty, message);
		return false;
	}
	if (!pow_replay_set_add(p->replays, digest, timestamp + p->config.pow_validity_seconds,
	                        now)) {
		snprintf(message, sizeof(message),
		         "This proof of work (nonce %" PRIu64 ", timestamp %" PRIu64 ") was used "
		         "already; compute a new one for each request.",
		         nonce, timestamp);
		reply_pow_error(call, "invalid_proof_of_work", "X-PoW-Nonce", difficulty, message);
		return false;
	}
	return true;
}

static uint64_t body_bytes(struct http_call *call)
{
	return evbuffer_get_length(evhttp_request_get_input_buffer(call->req));
}

/* Charges the request to the agent's quota and adds the X-Quota-* headers; replies 429
 * and returns false when the quota cannot cover it. */
static bool quota_gate(struct http_call *call, struct protect_route route, uint64_t now,
                       double trust)
{
	struct protect *p = call->state->protect;
	enum quota_request kind = QUOTA_READ;
	struct quota_status status;
	uint64_t limit, cost;
	char agent_hex[2 * AGENT_LEN + 1];

	if (route.cls == PROTECT_WRITE)
		kind = QUOTA_ASSERT;
	else if (route.cls == PROTECT_WRITE_VOTE)
		kind = QUOTA_VOTE;
	else if (route.cls == PROTECT_QUERY)
		kind = QUOTA_QUERY;
	cost = quota_cost(&p->config.costs, kind, route.lenses, body_bytes(call));
	limit = quota_limit(p->config.quota_tokens,
	                    admission_quota_multiplier(admission_tier_of(trust)));

	if (quota_charge(p->quotas, call->agent, limit, cost, now, &status)) {
		add_header(call, "X-Quota-Limit", status.limit);
		add_header(call, "X-Quota-Remaining", status.remaining);
		add_header(call, "X-Quota-Reset", status.reset_at);
		return true;
	}

	hex_encode(call->agent, AGENT_LEN, agent_hex);
	add_header(call, "X-Quota-Limit", status.limit);
	add_header(call, "X-Quota-Remaining", status.remaining);
	add_header(call, "X-Quota-Reset", status.reset_at);
	add_header(call, "Retry-After", status.reset_at > now ? status.reset_at - now : 1);
	http_reply_error(call, 429, "quota_exceeded", NULL,
	                 "Agent %s has %" PRIu64 " of %" PRIu64 " tokens left in this window and "
	                 "the request costs %" PRIu64 "; retry after Unix time %" PRIu64 ".",
	                 agent_hex, status.remaining, status.limit, cost, status.reset_at);
	return false;
}

/* Runs admission (for writes) and quota for a call whose agent is known. */
static bool admit_known_agent(struct http_call *call, struct protect_route route)
{
	struct protect *p = call->state->protect;
	bool write = route.cls == PROTECT_WRITE || route.cls == PROTECT_WRITE_VOTE;
	uint64_t now = wall_ms() / 1000;
	double trust = 0.5;

	call->admitted = true;
	if (!(write && p->config.admission_enabled) && !p->config.quota_enabled)
		return true;
	if (!agent_trust(call, now, &trust))
		return false;
	if (write && p->config.admission_enabled && !admission_gate(call, now, trust))
		return false;
	return !p->config.quota_enabled || quota_gate(call, route, now, trust);
}

bool protect_http_breaker(struct http_call *call)
{
	if (!call->agent_known || call->state->protect == NULL)
		return true;
	return breaker_gate(call);
}

bool protect_http_admit(struct http_call *call, struct protect_route route)
{
	call->protect_class = (int)route.cls;
	call->protect_lenses = route.lenses;
	if (!call->agent_known || call->state->protect == NULL)
		return true;
	return admit_known_agent(call, route);
}

bool protect_http_write(struct http_call *call, const uint8_t (*signers)[32], size_t signer_count,
                        bool single_record)
{
	struct protect *p = call->state->protect;
	struct protect_route route = {.cls = (enum protect_class)call->protect_class,
	                              .lenses = call->protect_lenses};
	bool named = false;
	char header_hex[2 * AGENT_LEN + 1];

	if (call->agent_from_header) {
		for (size_t i = 0; i < signer_count; i++)
			named = named || memcmp(signers[i], call->agent, AGENT_LEN) == 0;
		if (single_record && signer_count > 0 && !named) {
			hex_encode(call->agent, AGENT_LEN, header_hex);
			http_reply_error(
			        call, 400, "agent_mismatch", "X-Agent-Id",
			        "X-Agent-Id %s is not a signer of this record; send the id of "
			        "a signing agent or omit the header.",
			        header_hex);
			return false;
		}
		return true;
	}
	if (p == NULL || !protect_any_enabled(p) || call->admitted || signer_count == 0)
		return true;

	/* NOTE: the signer is not verified yet, so a forged body can charge failures and
	 * tokens to another agent; docs/known-limitations.md describes the gap. */
	memcpy(call->agent, signers[0], AGENT_LEN);
	call->agent_known = true;
	return breaker_gate(call) && admit_known_agent(call, route);
}

/* Failure kinds of the circuit breaker: invalid signatures, invalid input (400 and 422
 * from a handler), a bad proof of work and an exceeded quota. */
static bool is_failure(int status, const char *code)
{
	if (strcmp(code, "invalid_signature") == 0 || strcmp(code, "invalid_proof_of_work") == 0 ||
	    strcmp(code, "quota_exceeded") == 0)
		return true;
	return status == 400 || status == 422;
}

void protect_http_finish(struct http_call *call, int status)
{
	struct protect *p = call->state->protect;
	struct breaker_snapshot snap;
	enum breaker_transition transition;
	char agent_hex[2 * AGENT_LEN + 1];
	bool failure;

	if (p == NULL || !call->agent_known || !p->config.breaker_enabled)
		return;
	failure = is_failure(status, call->error_code);
	if (!failure && (status < 200 || status > 299))
		return;
	transition = breaker_record(p->breakers, call->agent, failure, wall_ms(), &snap);
	if (transition == BREAKER_UNCHANGED)
		return;

	hex_encode(call->agent, AGENT_LEN, agent_hex);
	if (transition == BREAKER_OPENED) {
		metric_inc(protect_metrics.transitions_opened);
		log_warn("circuit breaker of agent %s opened after %s (last: %d %s) until Unix ms "
		         "%" PRIu64,
		         agent_hex, snap.reason, status, call->error_code, snap.open_until_ms);
	} else {
		log_info("circuit breaker of agent %s closed after a successful request",
		         agent_hex);
	}
	breaker_persist(p, &snap);
}

/* ---- admin operations ---- */

size_t protect_breaker_list(struct protect *p, struct breaker_snapshot **out)
{
	return breaker_list(p->breakers, wall_ms(), out);
}

bool protect_breaker_ban(struct protect *p, const uint8_t agent[32], uint64_t duration_seconds,
                         const char *reason, struct breaker_snapshot *snap)
{
	char agent_hex[2 * AGENT_LEN + 1];

	breaker_ban(p->breakers, agent, duration_seconds * 1000, reason, wall_ms(), snap);
	metric_inc(protect_metrics.transitions_opened);
	hex_encode(agent, AGENT_LEN, agent_hex);
	log_warn("circuit breaker of agent %s banned by an administrator for %" PRIu64
	         " seconds: %s",
	         agent_hex, duration_seconds, reason);
	return breaker_persist(p, snap);
}

bool protect_breaker_reset(struct protect *p, const uint8_t agent[32], bool *found)
{
	struct breaker_snapshot snap;
	char agent_hex[2 * AGENT_LEN + 1];

	*found = breaker_reset(p->breakers, agent);
	memset(&snap, 0, sizeof(snap));
	memcpy(snap.agent, agent, AGENT_LEN);
	snap.state = BREAKER_CLOSED;
	hex_encode(agent, AGENT_LEN, agent_hex);
	log_info("circuit breaker of agent %s reset by an administrator (%s)", agent_hex,
	         *found ? "it was tracked" : "it was not tracked");
	return breaker_persist(p, &snap);
}

/* ---- GET /v1/admission/status ---- */

void http_handle_admission_status(struct http_call *call)
{
	static const char *const known[] = {"agent_id", NULL};
	struct protect *p = call->state->protect;
	struct http_query q;
	const struct http_param *agent_param;
	uint8_t agent[AGENT_LEN];
	uint64_t now = wall_ms() / 1000, count = 0;
	struct trust_summary summary;
	struct quota_status quota;
	enum admission_tier tier;
	unsigned difficulty;
	uint64_t until_easier, limit;
	char agent_hex[2 * AGENT_LEN + 1];
	struct breaker_snapshot breaker;
	json_t *body;

	if (!http_query_parse(call, known, &q)) {
		http_query_free(&q);
		return;
	}
	agent_param = http_query_get(&q, "agent_id");
	if (agent_param == NULL) {
		http_query_free(&q);
		http_reply_error(call, 400, "missing_parameter", "agent_id",
		                 "Query parameter agent_id is missing; give the 64 hex characters "
		                 "of an agent id.");
		return;
	}
	if (!hex_decode(agent_param->value, agent_param->value_len, agent, AGENT_LEN)) {
		http_reply_error(call, 400, "invalid_parameter", "agent_id",
		                 "Query parameter agent_id='%.80s' is not an agent id; give 64 hex "
		                 "characters.",
		                 agent_param->value);
		http_query_free(&q);
		return;
	}
	http_query_free(&q);
	hex_encode(agent, AGENT_LEN, agent_hex);

	if (trust_of_agent(call->state->store, agent, now, &summary) != STORE_OK ||
	    agent_assertions(p, agent, now, &count) != STORE_OK) {
		http_reply_error(
		        call, 500, "internal_error", NULL,
		        "Reading the trust or assertion count of the agent failed; see the "
		        "server log.");
		return;
	}
	tier = admission_tier_of(summary.trust);
	difficulty = p->config.admission_enabled
	                     ? admission_difficulty(&p->config.rules, count, summary.trust)
	                     : 0;
	until_easier =
	        p->config.admission_enabled
	                ? admission_assertions_until_easier(&p->config.rules, count, summary.trust)
	                : 0;
	limit = quota_limit(p->config.quota_tokens, admission_quota_multiplier(tier));
	quota_peek(p->quotas, agent, limit, now, &quota);

	breaker_peek(p->breakers, agent, wall_ms(), &breaker);
	body = json_pack("{s:s, s:s, s:f, s:f, s:I, s:b, s:i, s:b, s:I}", "agent_id", agent_hex,
	                 "tier", admission_tier_name(tier), "trust", summary.trust,
	                 "quota_multiplier", admission_quota_multiplier(tier), "assertion_count",
	                 (json_int_t)count, "admission_enabled", p->config.admission_enabled,
	                 "pow_difficulty", (int)difficulty, "pow_required", difficulty > 0,
	                 "assertions_until_easier", (json_int_t)until_easier);
	json_object_set_new(
	        body, "quota",
	        json_pack("{s:b, s:I, s:I, s:I, s:I}", "enabled", p->config.quota_enabled, "limit",
	                  (json_int_t)quota.limit, "used", (json_int_t)quota.used, "remaining",
	                  (json_int_t)quota.remaining, "reset", (json_int_t)quota.reset_at));
	json_object_set_new(body, "circuit_breaker_enabled",
	                    json_boolean(p->config.breaker_enabled));
	json_object_set_new(body, "circuit_breaker",
	                    json_pack("{s:s, s:i, s:I, s:b, s:s}", "state",
	                              breaker_state_name(breaker.state), "recent_failures",
	                              (int)breaker.recent_failures, "open_until_unix_ms",
	                              (json_int_t)breaker.open_until_ms, "banned", breaker.banned,
	                              "reason", breaker.reason));
	http_reply_json(call, 200, body);
}
