/* Load driver for stemedb-api: signs every assertion it sends with Ed25519 and drives
 * the HTTP API over keep-alive connections from one epoll loop.
 *
 *   loadgen single  --port P --count N [--clients 64] [--tag T] [--max-seconds S]
 *   loadgen batch   --port P --count N [--batch-size 500] [--clients 4] [--tag T]
 *   loadgen preload --port P --subjects N [--per-subject 10] [--batch-size 500]
 *                   [--clients 4] [--copy-out FILE]
 *   loadgen votes   --port P --subjects N [--per-subject 10] [--vote-percent 10]
 *                   [--clients 4]
 *   loadgen warmup  --port P [--per-agent 50] [--clients 4] [--tag T]
 *
 * Every mode also takes --api-key KEY (or the environment variable STEMEDB_API_KEY,
 * which keeps the key out of the process list), sent as X-API-Key, and
 * --agent-header on|off (default off), which sends the requesting agent as X-Agent-Id:
 * the signer of a single claim or vote, the first signer of a batch. After a 428 reply,
 * loadgen solves the proof of work for that agent at the difficulty in the reply
 * (pow_solve) and sends the request again with X-PoW-Nonce and X-PoW-Timestamp, up to
 * POW_ATTEMPTS_MAX sends in all. The result line counts the proofs and the seconds spent
 * solving them. The epoll loop is blocked while it solves, so proofs belong in untimed
 * runs.
 *
 * --distinct-subjects on makes the single, batch and warmup subjects unlike each other
 * (see fill_write_claim), as content defense expects of independent claims.
 *
 * warmup writes --per-agent single claims for each of the 16 agents, so that a node
 * with admission on has seen enough of each agent's assertions to stop asking it for
 * proofs of work.
 * single and batch build and sign every request before the clock starts, so the
 * measured window holds only HTTP traffic. preload builds each batch when a connection
 * is free, because the million-assertion dataset would otherwise sit in memory twice;
 * its assertions are deterministic (fixed keys, subjects and timestamps). Running it
 * again against the same data directory therefore returns "exists" and adds nothing.
 * With --copy-out it also writes every preloaded assertion as PostgreSQL COPY text, so
 * the peer database loads the very same rows.
 *
 * votes signs one to three votes (POST /v1/vote, one per request) for --vote-percent
 * percent of the preloaded subjects, each on one of the subject's preloaded claims. It
 * recomputes those claims' hashes from the same deterministic fields, so it needs the
 * same --subjects and --per-subject as the preload. Votes are deterministic too, and a
 * second run gets "exists" for each of them.
 *
 * Only loopback addresses (127.0.0.0/8) are accepted as targets. The run stops issuing
 * requests after --max-seconds (default 120) and gives in-flight requests 10 more
 * seconds. The last stdout line is "result key=value ..." for bench/run.sh. The exit
 * status is 0 only when every request succeeded and, outside warmup, content defense
 * quarantined no claim (a 202 reply or a batch's "quarantined" count). */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"
#include "stemedb/pow.h"
#include "stemedb/records.h"

#define AGENT_COUNT          16
#define CLIENTS_MAX          1024
#define DRAIN_SECONDS        10.0
#define IDLE_TIMEOUT_SECONDS 30.0
#define RECONNECTS_MAX       100
#define ERROR_BODIES_SHOWN   3
#define READ_CHUNK           65536
#define RESPONSE_MAX         (64u * 1024u * 1024u)
#define REQUEST_HEAD_MAX     512
/* Maximum sends of one request, the first included, while the server replies 428. */
#define POW_ATTEMPTS_MAX 3
/* Highest difficulty loadgen solves: 28 bits take about 2^28 BLAKE2b hashes, minutes
 * on one core, far above the 16 bits of StemeDB's defaults. */
#define POW_SOLVABLE_BITS_MAX 28
/* Length of an API key: "sdb_", 16 hex digits, "_", 64 hex digits. */
#define API_KEY_LEN 85

/* Timestamps of generated claims: a fixed instant keeps preloaded data identical across
 * runs. 1,760,000,000 is 2025-10-09 08:53:20 UTC. */
#define BASE_TIMESTAMP  1760000000u
#define SECONDS_PER_DAY 86400u

enum mode { MODE_SINGLE, MODE_BATCH, MODE_PRELOAD, MODE_VOTES, MODE_WARMUP };

struct options {
	enum mode mode;
	const char *host;
	long port;
	long count;
	long clients;
	long batch_size;
	long subjects;
	long per_subject;
	long vote_percent;
	long per_agent;
	double max_seconds;
	const char *tag;
	const char *copy_out;
	const char *api_key; /* NULL: no X-API-Key header */
	bool agent_header;
	bool distinct_subjects;
};

struct agent {
	uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
	uint8_t secret_key[crypto_sign_SECRETKEYBYTES];
};

/* One complete HTTP request and the number of assertions it carries. */
struct request {
	struct buf bytes;
	long items;
	int agent;             /* index of the requesting agent, -1 for none */
	size_t header_end;     /* end of the header lines, before the blank line */
	size_t body_offset;    /* start of the body */
	int pow_attempts_left; /* further sends allowed after a 428 */
};

struct workload {
	const struct options *opt;
	struct agent agents[AGENT_COUNT];
	FILE *copy_out;
	long total_items;
	long next_item;
	struct request *prebuilt; /* NULL in preload mode */
	long prebuilt_count;
	long next_request;
	bool failed; /* a claim could not be built */
	long voted_subjects;
	long sample_voted_subject; /* first subject with votes, -1 when there is none */
};

enum conn_state { CONN_CLOSED, CONN_CONNECTING, CONN_WRITING, CONN_READING };

struct conn {
	int fd;
	enum conn_state state;
	struct request *request;
	bool owns_request;
	size_t written;
	struct buf in;
	double sent_at;
	double last_progress;
};

struct stats {
	double *latencies_ms;
	size_t latency_count;
	size_t latency_cap;
	long requests_ok;
	long http_errors;
	long transport_errors;
	long reconnects;
	long created;
	long exists;
	long rejected;
	long quarantined;
	long proofs;
	double pow_seconds;
	int bodies_shown;
};

struct driver {
	const struct options *opt;
	struct workload *work;
	struct sockaddr_in addr;
	int epoll_fd;
	struct conn *conns;
	long open_conns;
	bool stopping;
	bool failed;
	struct stats stats;
	double start;
	double last_completion;
};

/* A parsed response head. */
struct response {
	int status;
	size_t body_offset;
	size_t body_len;
	bool close;
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *mode_name(enum mode mode);

/* ---- Assertion generation ---------------------------------------------------------- */

/* Derives agent i's key pair from a fixed seed so that every run uses the same agents. */
static void workload_make_agents(struct workload *w)
{
	for (int i = 0; i < AGENT_COUNT; i++) {
		char label[64];
		uint8_t seed[crypto_sign_SEEDBYTES];
		int len = snprintf(label, sizeof(label), "stemedb-bench-agent-%d", i);

		crypto_generichash(seed, sizeof(seed), (const uint8_t *)label, (size_t)len, NULL,
		                   0);
		crypto_sign_seed_keypair(w->agents[i].public_key, w->agents[i].secret_key, seed);
	}
}

/* Returns a value in 0..range-1 that depends only on index and salt, so generated
 * fields look random but repeat exactly between runs. */
static uint32_t mix(long index, uint32_t salt, uint32_t range)
{
	uint64_t x = (uint64_t)index * 0x9e3779b97f4a7c15ull + salt;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint32_t)(x % range);
}

static void set_text_fields(struct assertion *a, const char *subject, const char *predicate,
                            const char *value)
{
	assertion_set_subject(a, subject, strlen(subject));
	assertion_set_predicate(a, predicate, strlen(predicate));
	object_set_text(&a->object, OBJECT_TEXT, value, strlen(value));
}

/* Fills a unique claim for the single, batch and warmup modes. The tag keeps runs
 * apart. With --distinct-subjects on, the subject ends in 64 hex digits of a BLAKE2b
 * hash of tag and index. Sequential subjects differ in their last digits only, so
 * content defense finds two of them about 80 % similar. It then compares each new claim
 * with many stored ones and quarantines some as duplicates of other agents' claims. */
static void fill_write_claim(const struct workload *w, long index, struct assertion *a)
{
	char subject[192];
	char value[32];
	int len = snprintf(subject, sizeof(subject), "bench/%s/%s/%ld", mode_name(w->opt->mode),
	                   w->opt->tag, index);

	if (w->opt->distinct_subjects) {
		uint8_t digest[32];

		crypto_generichash(digest, sizeof(digest), (const uint8_t *)subject, (size_t)len,
		                   NULL, 0);
		subject[len++] = '/';
		hex_encode(digest, sizeof(digest), subject + len);
	}
	snprintf(value, sizeof(value), "value-%u", mix(index, 1, 7));
	set_text_fields(a, subject, "bench_value", value);

	a->confidence_micro = 300000u + mix(index, 2, 700001);
	a->source_class = (uint8_t)mix(index, 3, SOURCE_CLASS_COUNT);
	a->lifecycle = LIFECYCLE_PROPOSED;
	a->timestamp = BASE_TIMESTAMP + (uint64_t)mix(index, 4, SECONDS_PER_DAY);
}

/* Fills claim j of subject s in the query dataset: every subject gets per_subject
 * claims over four competing values, spread over all source classes and ages, so the
 * authority lens has tiers to pick from and values to weigh. */
static void fill_preload_claim(const struct workload *w, long index, struct assertion *a)
{
	long s = index / w->opt->per_subject;
	long j = index % w->opt->per_subject;
	char subject[64];
	char value[32];

	snprintf(subject, sizeof(subject), "bench/q/%ld", s);
	snprintf(value, sizeof(value), "v%u", mix(index, 5, 4));
	set_text_fields(a, subject, "bench_claim", value);

	a->confidence_micro = 300000u + mix(index, 6, 700001);
	a->source_class = (uint8_t)mix(index, 7, SOURCE_CLASS_COUNT);
	a->lifecycle = LIFECYCLE_PROPOSED;
	a->timestamp = BASE_TIMESTAMP - (uint64_t)j * 30u * SECONDS_PER_DAY;
}

/* Returns the index of the agent that signs claim `index` first. warmup takes the
 * agents in turn, so each writes the same number of claims. */
static int claim_agent(const struct workload *w, long index)
{
	if (w->opt->mode == MODE_WARMUP)
		return (int)(index % AGENT_COUNT);
	return (int)mix(index, 8, AGENT_COUNT);
}

/* Signs with one agent, and every fifth preloaded claim with a second one, so the
 * authority lens also weighs co-signed claims. */
static bool sign_claim(const struct workload *w, long index, struct assertion *a,
                       uint8_t hash[STEMEDB_HASH_LEN])
{
	const struct agent *first = &w->agents[claim_agent(w, index)];
	const struct agent *second = &w->agents[(claim_agent(w, index) + 1) % AGENT_COUNT];

	if (!assertion_hash(a, hash))
		return false;
	if (!assertion_sign(a, hash, first->secret_key, a->timestamp))
		return false;
	if (w->opt->mode == MODE_PRELOAD && index % 5 == 0)
		return assertion_sign(a, hash, second->secret_key, a->timestamp + 60);
	return true;
}

/* Writes one PostgreSQL COPY text row: hash, subject, predicate, object (jsonb),
 * confidence, source_class, lifecycle, timestamp, signatures (agent id, signature and
 * u64 timestamp per signer, concatenated). */
static void write_copy_row(FILE *out, const struct assertion *a,
                           const uint8_t hash[STEMEDB_HASH_LEN])
{
	char hex[2 * (STEMEDB_AGENT_ID_LEN + STEMEDB_SIGNATURE_LEN + 8) + 1];

	hex_encode(hash, STEMEDB_HASH_LEN, hex);
	fprintf(out,
	        "\\\\x%s\t%s\t%s\t{\"type\": \"text\", \"value\": "
	        "\"%s\"}\t%.6f\t%u\t%u\t%llu\t\\\\x",
	        hex, a->subject, a->predicate, a->object.text, a->confidence_micro / 1e6,
	        a->source_class, a->lifecycle, (unsigned long long)a->timestamp);
	for (size_t i = 0; i < a->signature_count; i++) {
		uint8_t raw[STEMEDB_AGENT_ID_LEN + STEMEDB_SIGNATURE_LEN + 8];

		memcpy(raw, a->signatures[i].agent_id, STEMEDB_AGENT_ID_LEN);
		memcpy(raw + STEMEDB_AGENT_ID_LEN, a->signatures[i].signature,
		       STEMEDB_SIGNATURE_LEN);
		store_u64le(raw + STEMEDB_AGENT_ID_LEN + STEMEDB_SIGNATURE_LEN,
		            a->signatures[i].timestamp);
		hex_encode(raw, sizeof(raw), hex);
		fputs(hex, out);
	}
	fputc('\n', out);
}

/* Appends the compact JSON of signed claim `index` to body. */
static bool append_claim_json(struct workload *w, long index, struct buf *body)
{
	struct assertion a;
	uint8_t hash[STEMEDB_HASH_LEN];
	json_t *json = NULL;
	char *text = NULL;
	bool ok = false;

	assertion_init(&a);
	if (w->opt->mode == MODE_PRELOAD)
		fill_preload_claim(w, index, &a);
	else
		fill_write_claim(w, index, &a);
	if (!sign_claim(w, index, &a, hash))
		goto done;

	json = assertion_to_json(&a, hash);
	text = json == NULL ? NULL : json_dumps(json, JSON_COMPACT);
	if (text == NULL)
		goto done;
	buf_append(body, text, strlen(text));
	if (w->copy_out != NULL)
		write_copy_row(w->copy_out, &a, hash);
	ok = true;

done:
	if (!ok)
		fprintf(stderr, "loadgen: building claim %ld failed\n", index);
	free(text);
	json_decref(json);
	assertion_free(&a);
	return ok;
}

/* Frames a POST of body to path on behalf of agent (an index into w->agents, -1 for
 * none), with the X-API-Key and X-Agent-Id headers that the options ask for. */
static void request_frame(const struct workload *w, const char *path, int agent,
                          const struct buf *body, struct request *req)
{
	const struct options *opt = w->opt;
	char head[REQUEST_HEAD_MAX];
	char agent_hex[2 * STEMEDB_AGENT_ID_LEN + 1];
	int len = snprintf(head, sizeof(head),
	                   "POST %s HTTP/1.1\r\nHost: %s:%ld\r\nContent-Type: application/json\r\n"
	                   "Content-Length: %zu\r\n",
	                   path, opt->host, opt->port, body->len);

	if (opt->api_key != NULL)
		len += snprintf(head + len, sizeof(head) - (size_t)len, "X-API-Key: %s\r\n",
		                opt->api_key);
	if (opt->agent_header && agent >= 0) {
		hex_encode(w->agents[agent].public_key, STEMEDB_AGENT_ID_LEN, agent_hex);
		len += snprintf(head + len, sizeof(head) - (size_t)len, "X-Agent-Id: %s\r\n",
		                agent_hex);
	}

	buf_init(&req->bytes);
	buf_append(&req->bytes, head, (size_t)len);
	req->header_end = (size_t)len;
	buf_append(&req->bytes, "\r\n", 2);
	req->body_offset = req->bytes.len;
	buf_append(&req->bytes, body->data, body->len);
	req->agent = agent;
	req->pow_attempts_left = POW_ATTEMPTS_MAX - 1;
}

/* Builds the next request from the claims not yet generated: one claim in single mode,
 * up to batch_size claims in the batch modes. */
static bool workload_build(struct workload *w, struct request *req)
{
	bool batch = w->opt->mode == MODE_BATCH || w->opt->mode == MODE_PRELOAD;
	long items = batch ? w->opt->batch_size : 1;
	int agent = claim_agent(w, w->next_item);
	struct buf body;
	bool ok = true;

	if (items > w->total_items - w->next_item)
		items = w->total_items - w->next_item;
	buf_init(&body);
	if (batch)
		buf_append(&body, "{\"assertions\":[", 15);
	for (long i = 0; i < items && ok; i++) {
		if (i > 0)
			buf_append(&body, ",", 1);
		ok = append_claim_json(w, w->next_item + i, &body);
	}
	if (batch)
		buf_append(&body, "]}", 2);

	w->next_item += items;
	req->items = items;
	if (ok)
		request_frame(w, batch ? "/v1/assert/batch" : "/v1/assert", agent, &body, req);
	buf_free(&body);
	return ok;
}

/* Returns how many votes subject s gets: none for subjects outside the vote_percent
 * percent that mix picks, one to three for the others. */
static long subject_vote_count(const struct workload *w, long s)
{
	if ((long)mix(s, 9, 100) >= w->opt->vote_percent)
		return 0;
	return 1 + (long)mix(s, 10, 3);
}

/* Fills and signs vote k on subject s. Each of a subject's votes comes from a different
 * agent and lands on one of the subject's preloaded claims. Weights run from -0.2 to 1.0,
 * so some votes dispute their claim. */
static int vote_agent(long s, long k)
{
	return (int)((mix(s, 12, AGENT_COUNT) + (uint32_t)k) % AGENT_COUNT);
}

static bool sign_vote(const struct workload *w, long s, long k, struct record *r)
{
	const struct agent *voter = &w->agents[vote_agent(s, k)];
	long claim =
	        s * w->opt->per_subject + (long)mix(s * 4 + k, 11, (uint32_t)w->opt->per_subject);
	struct assertion a;
	uint8_t id[STEMEDB_HASH_LEN];
	bool ok;

	assertion_init(&a);
	fill_preload_claim(w, claim, &a);
	ok = assertion_hash(&a, r->u.vote.assertion_hash);
	assertion_free(&a);

	memcpy(r->u.vote.voter, voter->public_key, STEMEDB_AGENT_ID_LEN);
	r->u.vote.weight_micro = (int32_t)mix(s * 4 + k, 13, 1200001) - 200000;
	r->u.vote.timestamp = BASE_TIMESTAMP + 3600u * (uint64_t)(k + 1);
	return ok && record_id(r, id) && record_sign(r, id, voter->secret_key);
}

/* Builds the complete POST /v1/vote request for vote k on subject s. */
static bool build_vote_request(struct workload *w, long s, long k, struct request *req)
{
	struct record r;
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];
	char voter_hex[2 * STEMEDB_AGENT_ID_LEN + 1];
	char signature_hex[2 * STEMEDB_SIGNATURE_LEN + 1];
	char text[512];
	struct buf body;
	int len;
	bool ok;

	record_init(&r, STEMEDB_RECORD_VOTE);
	ok = sign_vote(w, s, k, &r);
	if (!ok) {
		fprintf(stderr, "loadgen: signing vote %ld of subject %ld failed\n", k, s);
		record_free(&r);
		return false;
	}

	hex_encode(r.u.vote.assertion_hash, STEMEDB_HASH_LEN, hash_hex);
	hex_encode(r.u.vote.voter, STEMEDB_AGENT_ID_LEN, voter_hex);
	hex_encode(r.signers[0].signature, STEMEDB_SIGNATURE_LEN, signature_hex);
	len = snprintf(text, sizeof(text),
	               "{\"assertion_hash\":\"%s\",\"voter\":\"%s\",\"weight\":%.6f,"
	               "\"timestamp\":%llu,\"signature\":\"%s\"}",
	               hash_hex, voter_hex, r.u.vote.weight_micro / 1e6,
	               (unsigned long long)r.u.vote.timestamp, signature_hex);
	record_free(&r);

	buf_init(&body);
	buf_append(&body, text, (size_t)len);
	req->items = 1;
	request_frame(w, "/v1/vote", vote_agent(s, k), &body, req);
	buf_free(&body);
	return true;
}

/* Builds every vote request before the clock starts, in subject order. */
static bool workload_prebuild_votes(struct workload *w)
{
	long next = 0;

	w->sample_voted_subject = -1;
	for (long s = 0; s < w->opt->subjects; s++)
		w->total_items += subject_vote_count(w, s);
	w->prebuilt_count = w->total_items;
	w->prebuilt =
	        calloc((size_t)(w->total_items > 0 ? w->total_items : 1), sizeof(*w->prebuilt));
	if (w->prebuilt == NULL) {
		fprintf(stderr, "loadgen: out of memory for %ld votes\n", w->total_items);
		return false;
	}

	for (long s = 0; s < w->opt->subjects; s++) {
		long votes = subject_vote_count(w, s);

		if (votes > 0 && w->sample_voted_subject < 0)
			w->sample_voted_subject = s;
		w->voted_subjects += votes > 0;
		for (long k = 0; k < votes; k++) {
			if (!build_vote_request(w, s, k, &w->prebuilt[next++]))
				return false;
		}
	}
	return true;
}

static bool workload_prebuild(struct workload *w)
{
	long per_request = w->opt->mode == MODE_BATCH ? w->opt->batch_size : 1;

	if (w->opt->mode == MODE_VOTES)
		return workload_prebuild_votes(w);

	w->prebuilt_count = (w->total_items + per_request - 1) / per_request;
	w->prebuilt = calloc((size_t)w->prebuilt_count, sizeof(*w->prebuilt));
	if (w->prebuilt == NULL) {
		fprintf(stderr, "loadgen: out of memory for %ld requests\n", w->prebuilt_count);
		return false;
	}
	for (long i = 0; i < w->prebuilt_count; i++) {
		if (!workload_build(w, &w->prebuilt[i]))
			return false;
	}
	return true;
}

/* Hands out the next request, or NULL when the workload is exhausted. *owned is set
 * to whether the caller must free it. */
static struct request *workload_next(struct workload *w, bool *owned)
{
	struct request *req;

	if (w->prebuilt != NULL) {
		*owned = false;
		return w->next_request < w->prebuilt_count ? &w->prebuilt[w->next_request++] : NULL;
	}
	if (w->next_item >= w->total_items)
		return NULL;
	req = calloc(1, sizeof(*req));
	if (req == NULL || !workload_build(w, req)) {
		w->failed = true;
		free(req);
		return NULL;
	}
	*owned = true;
	return req;
}

static void request_release(struct request *req, bool owned)
{
	if (req == NULL || !owned)
		return;
	buf_free(&req->bytes);
	free(req);
}

/* ---- HTTP response parsing ----------------------------------------------------------- */

static bool header_is(const char *line, size_t len, const char *name)
{
	size_t name_len = strlen(name);

	return len > name_len && strncasecmp(line, name, name_len) == 0 && line[name_len] == ':';
}

static const char *header_value(const char *line, size_t len, const char *name, size_t *out_len)
{
	const char *v = line + strlen(name) + 1;
	const char *end = line + len;

	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	*out_len = (size_t)(end - v);
	return v;
}

/* Applies one header line to r. Returns false for a head this driver cannot follow. */
static bool parse_header_line(const char *line, size_t len, struct response *r, bool *has_length)
{
	size_t value_len;
	const char *value;

	if (header_is(line, len, "Content-Length")) {
		value = header_value(line, len, "Content-Length", &value_len);
		r->body_len = (size_t)strtoull(value, NULL, 10);
		*has_length = true;
	} else if (header_is(line, len, "Connection")) {
		value = header_value(line, len, "Connection", &value_len);
		r->close = value_len >= 5 && strncasecmp(value, "close", 5) == 0;
	} else if (header_is(line, len, "Transfer-Encoding")) {
		fprintf(stderr, "loadgen: chunked responses are not supported\n");
		return false;
	}
	return true;
}

/* Returns 1 when in contains a complete response (described in r), 0 when more bytes are
 * needed, -1 when the response is malformed. */
static int parse_response(const struct buf *in, struct response *r)
{
	const char *data = (const char *)in->data;
	const char *head_end = memmem(data, in->len, "\r\n\r\n", 4);
	bool has_length = false;
	const char *line;

	if (head_end == NULL)
		return in->len > 65536 ? -1 : 0;
	memset(r, 0, sizeof(*r));
	if (in->len < 12 || strncmp(data, "HTTP/1.", 7) != 0)
		return -1;
	r->status = atoi(data + 9);

	line = memmem(data, (size_t)(head_end - data), "\r\n", 2);
	while (line != NULL && line < head_end) {
		const char *start = line + 2;
		const char *next = memmem(start, (size_t)(head_end + 2 - start), "\r\n", 2);

		if (next == NULL ||
		    !parse_header_line(start, (size_t)(next - start), r, &has_length))
			return -1;
		line = next;
	}
	if (!has_length || r->body_len > RESPONSE_MAX)
		return -1;
	r->body_offset = (size_t)(head_end - data) + 4;
	return in->len >= r->body_offset + r->body_len ? 1 : 0;
}

/* ---- Result accounting ---------------------------------------------------------------- */

static void stats_add_latency(struct stats *s, double ms)
{
	if (s->latency_count == s->latency_cap) {
		size_t cap = s->latency_cap == 0 ? 4096 : 2 * s->latency_cap;
		double *grown = realloc(s->latencies_ms, cap * sizeof(double));

		if (grown == NULL)
			return;
		s->latencies_ms = grown;
		s->latency_cap = cap;
	}
	s->latencies_ms[s->latency_count++] = ms;
}

static void show_error_body(struct stats *s, int status, const char *body, size_t len)
{
	if (s->bodies_shown >= ERROR_BODIES_SHOWN)
		return;
	s->bodies_shown++;
	fprintf(stderr, "loadgen: HTTP %d: %.*s\n", status, (int)(len > 400 ? 400 : len), body);
}

static long json_count(const json_t *root, const char *name)
{
	json_t *value = json_object_get(root, name);

	return json_is_integer(value) ? (long)json_integer_value(value) : -1;
}

/* Adds the per-item counts of a 200 batch response. Returns false when the body is not
 * the documented shape or when an item was rejected. */
static bool account_batch(struct stats *s, const char *body, size_t len)
{
	json_error_t error;
	json_t *root = json_loadb(body, len, 0, &error);
	long created = json_count(root, "created");
	long existing = json_count(root, "existing");
	long rejected = json_count(root, "rejected");
	long quarantined = json_count(root, "quarantined"); /* absent when defense is off */

	json_decref(root);
	if (created < 0 || existing < 0 || rejected < 0) {
		show_error_body(s, 200, body, len);
		return false;
	}
	s->created += created;
	s->exists += existing;
	s->rejected += rejected;
	s->quarantined += quarantined > 0 ? quarantined : 0;
	if (rejected > 0)
		show_error_body(s, 200, body, len);
	return rejected == 0;
}

/* Classifies one response. single, warmup and votes count 201 as created, 200 as
 * exists and 202 as quarantined (stored, but held back by content defense), and the
 * batch modes read the per-item counts. Anything else is an HTTP error. */
static void account_response(struct driver *d, const struct response *r, const char *body)
{
	struct stats *s = &d->stats;
	bool batch = d->opt->mode == MODE_BATCH || d->opt->mode == MODE_PRELOAD;
	bool ok;

	if (batch)
		ok = r->status == 200 && account_batch(s, body, r->body_len);
	else
		ok = r->status == 201 || r->status == 200 || r->status == 202;
	if (!batch && r->status == 201)
		s->created++;
	if (!batch && r->status == 200)
		s->exists++;
	if (!batch && r->status == 202)
		s->quarantined++;

	if (!ok) {
		s->http_errors++;
		if (r->status != 200)
			show_error_body(s, r->status, body, r->body_len);
		return;
	}
	s->requests_ok++;
}

/* ---- Connections ---------------------------------------------------------------------- */

static void conn_close(struct driver *d, struct conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(d->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		d->open_conns--;
	}
	c->fd = -1;
	c->state = CONN_CLOSED;
	request_release(c->request, c->owns_request);
	c->request = NULL;
}

static bool conn_watch(struct driver *d, struct conn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (epoll_ctl(d->epoll_fd, op, c->fd, &ev) != 0) {
		fprintf(stderr, "loadgen: epoll_ctl(fd %d) failed: %s\n", c->fd, strerror(errno));
		return false;
	}
	return true;
}

static bool conn_open(struct driver *d, struct conn *c)
{
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "loadgen: socket() failed: %s\n", strerror(errno));
		return false;
	}
	d->open_conns++;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&d->addr, sizeof(d->addr)) != 0 &&
	    errno != EINPROGRESS) {
		fprintf(stderr, "loadgen: connect(%s:%ld) failed: %s\n", d->opt->host, d->opt->port,
		        strerror(errno));
		return false;
	}
	c->state = CONN_CONNECTING;
	c->last_progress = now_seconds();
	return conn_watch(d, c, EPOLLOUT, EPOLL_CTL_ADD);
}

static bool conn_write(struct driver *d, struct conn *c)
{
	const struct buf *out = &c->request->bytes;

	while (c->written < out->len) {
		ssize_t n = write(c->fd, out->data + c->written, out->len - c->written);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return conn_watch(d, c, EPOLLOUT, EPOLL_CTL_MOD);
		if (n < 0)
			return false;
		c->written += (size_t)n;
		c->last_progress = now_seconds();
	}
	c->state = CONN_READING;
	return conn_watch(d, c, EPOLLIN, EPOLL_CTL_MOD);
}

/* Sends the next request on c, or closes c when there is nothing left to send. */
static bool conn_start_next(struct driver *d, struct conn *c)
{
	request_release(c->request, c->owns_request);
	c->request = d->stopping ? NULL : workload_next(d->work, &c->owns_request);
	if (c->request == NULL) {
		conn_close(d, c);
		return true;
	}
	buf_reset(&c->in);
	c->written = 0;
	c->state = CONN_WRITING;
	c->sent_at = now_seconds();
	return conn_write(d, c);
}

/* Handles a broken connection: counts the request it carried as failed and reconnects,
 * up to RECONNECTS_MAX times per run. */
static void conn_fail(struct driver *d, struct conn *c, const char *what)
{
	bool had_request = c->state == CONN_WRITING || c->state == CONN_READING;

	if (d->stats.transport_errors < ERROR_BODIES_SHOWN)
		fprintf(stderr, "loadgen: connection fd %d failed while %s\n", c->fd, what);
	if (had_request)
		d->stats.transport_errors++;
	conn_close(d, c);
	if (d->stopping || d->stats.reconnects >= RECONNECTS_MAX) {
		d->failed = d->failed || d->stats.reconnects >= RECONNECTS_MAX;
		return;
	}
	d->stats.reconnects++;
	if (!conn_open(d, c))
		conn_close(d, c);
}

static void conn_on_connected(struct driver *d, struct conn *c)
{
	int error = 0;
	socklen_t len = sizeof(error);

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len);
	if (error != 0) {
		if (!d->failed)
			fprintf(stderr, "loadgen: connect(%s:%ld) failed: %s\n", d->opt->host,
			        d->opt->port, strerror(error));
		d->failed = true;
		conn_close(d, c);
		return;
	}
	if (!conn_start_next(d, c))
		conn_fail(d, c, "writing");
}

/* Builds the resend after a 428 reply: the head of c's request, X-PoW-Nonce and
 * X-PoW-Timestamp with a proof for the difficulty in body, then the same body. A
 * random start nonce keeps proofs of the same agent in the same second apart, because
 * the server accepts each proof once. Returns NULL when no proof can be sent. */
static struct request *pow_retry_request(struct driver *d, const struct request *req,
                                         const char *body, size_t len)
{
	json_error_t error;
	json_t *root = json_loadb(body, len, 0, &error);
	json_int_t difficulty = json_integer_value(json_object_get(root, "difficulty"));
	const uint8_t *agent = d->work->agents[req->agent].public_key;
	uint64_t timestamp = (uint64_t)time(NULL);
	uint64_t start;
	uint64_t nonce;
	double started = now_seconds();
	struct request *retry;
	char lines[128];
	int lines_len;

	json_decref(root);
	if (difficulty < 1 || difficulty > POW_SOLVABLE_BITS_MAX) {
		fprintf(stderr,
		        "loadgen: invalid difficulty %lld in a 428 reply: loadgen solves 1..%d "
		        "bits\n",
		        (long long)difficulty, POW_SOLVABLE_BITS_MAX);
		return NULL;
	}
	randombytes_buf(&start, sizeof(start));
	start >>= 1; /* keeps start + attempts below 2^64 */
	if (!pow_solve(agent, timestamp, (unsigned)difficulty, start, UINT64_C(1) << 40, &nonce)) {
		fprintf(stderr, "loadgen: no proof of work with %lld bits found\n",
		        (long long)difficulty);
		return NULL;
	}
	d->stats.proofs++;
	d->stats.pow_seconds += now_seconds() - started;

	retry = calloc(1, sizeof(*retry));
	if (retry == NULL)
		return NULL;
	lines_len =
	        snprintf(lines, sizeof(lines), "X-PoW-Nonce: %llu\r\nX-PoW-Timestamp: %llu\r\n\r\n",
	                 (unsigned long long)nonce, (unsigned long long)timestamp);
	buf_init(&retry->bytes);
	buf_append(&retry->bytes, req->bytes.data, req->header_end);
	retry->header_end = req->header_end;
	buf_append(&retry->bytes, lines, (size_t)lines_len);
	retry->body_offset = retry->bytes.len;
	buf_append(&retry->bytes, req->bytes.data + req->body_offset,
	           req->bytes.len - req->body_offset);
	retry->items = req->items;
	retry->agent = req->agent;
	retry->pow_attempts_left = req->pow_attempts_left - 1;
	return retry;
}

/* Sends c's request again with a proof of work after a 428 reply. Returns false when
 * the reply is to be counted as an error instead. */
static bool conn_retry_with_pow(struct driver *d, struct conn *c, const struct response *r)
{
	struct request *retry;

	if (r->status != 428 || r->close || c->request->agent < 0 ||
	    c->request->pow_attempts_left <= 0)
		return false;
	retry = pow_retry_request(d, c->request, (const char *)c->in.data + r->body_offset,
	                          r->body_len);
	if (retry == NULL)
		return false;

	request_release(c->request, c->owns_request);
	c->request = retry;
	c->owns_request = true;
	buf_reset(&c->in);
	c->written = 0;
	c->state = CONN_WRITING;
	/* sent_at stays at the first send, so the latency includes the proof. */
	if (!conn_write(d, c))
		conn_fail(d, c, "writing");
	return true;
}

/* Records a complete response and moves c on to its next request. */
static void conn_complete(struct driver *d, struct conn *c, const struct response *r)
{
	double done = now_seconds();

	if (conn_retry_with_pow(d, c, r))
		return;
	account_response(d, r, (const char *)c->in.data + r->body_offset);
	if (r->status >= 200 && r->status < 300)
		stats_add_latency(&d->stats, (done - c->sent_at) * 1e3);
	d->last_completion = done;

	if (r->close) {
		conn_close(d, c);
		if (!d->stopping && conn_open(d, c))
			return;
		conn_close(d, c);
		return;
	}
	if (!conn_start_next(d, c))
		conn_fail(d, c, "writing");
}

static void conn_read(struct driver *d, struct conn *c)
{
	struct response r;

	for (;;) {
		ssize_t n;
		int parsed;

		buf_reserve(&c->in, READ_CHUNK);
		n = read(c->fd, c->in.data + c->in.len, READ_CHUNK);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_fail(d, c, n == 0 ? "reading (closed by server)" : "reading");
			return;
		}
		c->in.len += (size_t)n;
		c->last_progress = now_seconds();

		parsed = parse_response(&c->in, &r);
		if (parsed < 0) {
			conn_fail(d, c, "parsing the response");
			return;
		}
		if (parsed == 1) {
			conn_complete(d, c, &r);
			return;
		}
	}
}

static void conn_on_event(struct driver *d, struct conn *c, uint32_t events)
{
	if (c->state == CONN_CONNECTING) {
		conn_on_connected(d, c);
		return;
	}
	if (c->state == CONN_WRITING && (events & EPOLLOUT)) {
		if (!conn_write(d, c))
			conn_fail(d, c, "writing");
		return;
	}
	if (c->state == CONN_READING && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		conn_read(d, c);
}

/* ---- The run ---------------------------------------------------------------------------- */

/* Fails connections that made no progress for IDLE_TIMEOUT_SECONDS, and closes the rest
 * once the drain time after --max-seconds is over. */
static void driver_check_deadlines(struct driver *d, double now)
{
	bool drain_over = now - d->start > d->opt->max_seconds + DRAIN_SECONDS;

	if (now - d->start > d->opt->max_seconds && !d->stopping) {
		fprintf(stderr, "loadgen: time limit of %.0f s reached, stopping\n",
		        d->opt->max_seconds);
		d->stopping = true;
	}
	for (long i = 0; i < d->opt->clients; i++) {
		struct conn *c = &d->conns[i];

		if (c->state == CONN_CLOSED)
			continue;
		if (drain_over || now - c->last_progress > IDLE_TIMEOUT_SECONDS) {
			fprintf(stderr, "loadgen: request on fd %d timed out\n", c->fd);
			d->stats.transport_errors++;
			d->failed = true;
			conn_close(d, c);
		}
	}
}

static bool driver_run(struct driver *d)
{
	struct epoll_event events[64];
	double last_check = 0;

	d->start = now_seconds();
	d->last_completion = d->start;
	for (long i = 0; i < d->opt->clients; i++) {
		if (!conn_open(d, &d->conns[i]))
			return false;
	}

	while (d->open_conns > 0 && !d->failed) {
		int n = epoll_wait(d->epoll_fd, events, 64, 100);
		double now = now_seconds();

		for (int i = 0; i < n; i++)
			conn_on_event(d, events[i].data.ptr, events[i].events);
		if (now - last_check >= 0.1) {
			driver_check_deadlines(d, now);
			last_check = now;
		}
	}
	return !d->failed;
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a;
	double y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Returns the value at quantile q of a sorted array (nearest-rank method). */
static double quantile(const double *sorted, size_t n, double q)
{
	size_t rank = (size_t)(q * (double)n + 0.999999);

	if (n == 0)
		return 0;
	if (rank == 0)
		rank = 1;
	return sorted[(rank > n ? n : rank) - 1];
}

static const char *mode_name(enum mode mode)
{
	switch (mode) {
	case MODE_SINGLE:
		return "single";
	case MODE_BATCH:
		return "batch";
	case MODE_PRELOAD:
		return "preload";
	case MODE_VOTES:
		return "votes";
	case MODE_WARMUP:
		return "warmup";
	}
	return "?";
}

static void print_result(struct driver *d, double gen_seconds)
{
	struct stats *s = &d->stats;
	double elapsed = d->last_completion - d->start;
	double *l = s->latencies_ms;
	size_t n = s->latency_count;

	if (n > 0)
		qsort(l, n, sizeof(double), compare_doubles);
	if (d->opt->mode == MODE_VOTES)
		printf("votes voted_subjects=%ld sample_voted_subject=%ld\n",
		       d->work->voted_subjects, d->work->sample_voted_subject);
	printf("result mode=%s clients=%ld requests_ok=%ld http_errors=%ld transport_errors=%ld "
	       "created=%ld exists=%ld rejected=%ld seconds=%.3f items_per_sec=%.1f "
	       "requests_per_sec=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f gen_seconds=%.3f "
	       "quarantined=%ld proofs=%ld pow_seconds=%.3f\n",
	       mode_name(d->opt->mode), d->opt->clients, s->requests_ok, s->http_errors,
	       s->transport_errors, s->created, s->exists, s->rejected, elapsed,
	       elapsed > 0 ? (double)(s->created + s->exists + s->quarantined) / elapsed : 0,
	       elapsed > 0 ? (double)s->requests_ok / elapsed : 0, quantile(l, n, 0.50),
	       quantile(l, n, 0.99), n > 0 ? l[n - 1] : 0, gen_seconds, s->quarantined, s->proofs,
	       s->pow_seconds);
}

/* ---- Options ------------------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
	        "usage: loadgen single  --port P --count N [--clients 64] [--tag T]\n"
	        "       loadgen batch   --port P --count N [--batch-size 500] [--clients 4] "
	        "[--tag T]\n"
	        "       loadgen preload --port P --subjects N [--per-subject 10] "
	        "[--batch-size 500] [--clients 4] [--copy-out FILE]\n"
	        "       loadgen votes   --port P --subjects N [--per-subject 10] "
	        "[--vote-percent 10] [--clients 4]\n"
	        "       loadgen warmup  --port P [--per-agent 50] [--clients 4] [--tag T]\n"
	        "common options: --host 127.0.0.1 (loopback only), --max-seconds 120,\n"
	        "  --api-key KEY (sent as X-API-Key; default: $STEMEDB_API_KEY, none if unset),\n"
	        "  --agent-header on|off (send X-Agent-Id; default off),\n"
	        "  --distinct-subjects on|off (single, batch and warmup subjects end in a\n"
	        "  64-digit hash; default off)\n");
}

static bool parse_long(const char *name, const char *text, long min, long max, long *out)
{
	char *end = NULL;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
		fprintf(stderr, "loadgen: invalid %s \"%s\": expected an integer in %ld..%ld\n",
		        name, text, min, max);
		return false;
	}
	*out = value;
	return true;
}

static bool tag_valid(const char *tag)
{
	size_t len = strlen(tag);

	if (len == 0 || len > 32)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = tag[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

/* Checks the API key format, sdb_<16 lowercase hex>_<64 lowercase hex>, so that a
 * typo fails here and no text reaches the request head unchecked. */
static bool api_key_valid(const char *key)
{
	if (strlen(key) != API_KEY_LEN || strncmp(key, "sdb_", 4) != 0 || key[20] != '_')
		return false;
	for (size_t i = 4; i < API_KEY_LEN; i++) {
		char ch = key[i];

		if (i != 20 && !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
	}
	return true;
}

static bool set_api_key(struct options *opt, const char *source, const char *value)
{
	if (!api_key_valid(value)) {
		fprintf(stderr,
		        "loadgen: invalid API key in %s: expected sdb_<16 hex digits>_<64 hex "
		        "digits>, as stemedb-ctl keys generate prints\n",
		        source);
		return false;
	}
	opt->api_key = value;
	return true;
}

static bool parse_text_option(struct options *opt, const char *name, const char *value)
{
	if (strcmp(name, "--api-key") == 0) {
		return set_api_key(opt, "--api-key", value);
	} else if (strcmp(name, "--agent-header") == 0) {
		if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
			fprintf(stderr, "loadgen: invalid --agent-header \"%s\": use on or off\n",
			        value);
			return false;
		}
		opt->agent_header = strcmp(value, "on") == 0;
	} else if (strcmp(name, "--distinct-subjects") == 0) {
		if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
			fprintf(stderr,
			        "loadgen: invalid --distinct-subjects \"%s\": use on or off\n",
			        value);
			return false;
		}
		opt->distinct_subjects = strcmp(value, "on") == 0;
	} else if (strcmp(name, "--host") == 0) {
		opt->host = value;
	} else if (strcmp(name, "--copy-out") == 0) {
		opt->copy_out = value;
	} else if (strcmp(name, "--tag") == 0) {
		if (!tag_valid(value)) {
			fprintf(stderr,
			        "loadgen: invalid --tag \"%s\": use 1..32 letters, digits, "
			        "'-' or '_'\n",
			        value);
			return false;
		}
		opt->tag = value;
	} else {
		fprintf(stderr, "loadgen: unknown option \"%s\"; run without arguments for usage\n",
		        name);
		return false;
	}
	return true;
}

static bool parse_option(struct options *opt, const char *name, const char *value)
{
	long seconds;

	if (strcmp(name, "--port") == 0)
		return parse_long(name, value, 1, 65535, &opt->port);
	if (strcmp(name, "--count") == 0)
		return parse_long(name, value, 1, 10000000, &opt->count);
	if (strcmp(name, "--clients") == 0)
		return parse_long(name, value, 1, CLIENTS_MAX, &opt->clients);
	if (strcmp(name, "--batch-size") == 0)
		return parse_long(name, value, 1, 1000, &opt->batch_size);
	if (strcmp(name, "--subjects") == 0)
		return parse_long(name, value, 1, 10000000, &opt->subjects);
	if (strcmp(name, "--per-subject") == 0)
		return parse_long(name, value, 1, 1000, &opt->per_subject);
	if (strcmp(name, "--vote-percent") == 0)
		return parse_long(name, value, 0, 100, &opt->vote_percent);
	if (strcmp(name, "--per-agent") == 0)
		return parse_long(name, value, 1, 100000, &opt->per_agent);
	if (strcmp(name, "--max-seconds") == 0) {
		if (!parse_long(name, value, 1, 3600, &seconds))
			return false;
		opt->max_seconds = (double)seconds;
		return true;
	}
	return parse_text_option(opt, name, value);
}

static bool parse_mode(const char *text, struct options *opt)
{
	if (strcmp(text, "single") == 0) {
		opt->mode = MODE_SINGLE;
		opt->clients = 64;
	} else if (strcmp(text, "batch") == 0) {
		opt->mode = MODE_BATCH;
	} else if (strcmp(text, "preload") == 0) {
		opt->mode = MODE_PRELOAD;
	} else if (strcmp(text, "votes") == 0) {
		opt->mode = MODE_VOTES;
	} else if (strcmp(text, "warmup") == 0) {
		opt->mode = MODE_WARMUP;
	} else {
		usage();
		return false;
	}
	return true;
}

/* Checks the combination of options and resolves the target address, which must be a
 * loopback address: this driver is for benchmarks on this machine only. */
static bool options_check(const struct options *opt, struct sockaddr_in *addr)
{
	bool needs_count = opt->mode == MODE_SINGLE || opt->mode == MODE_BATCH;
	bool needs_subjects = opt->mode == MODE_PRELOAD || opt->mode == MODE_VOTES;

	if (opt->port == 0 || (needs_count && opt->count == 0) ||
	    (needs_subjects && opt->subjects == 0)) {
		fprintf(stderr,
		        "loadgen: missing --port or --%s; run without arguments for "
		        "usage\n",
		        needs_count ? "count" : "subjects");
		return false;
	}
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_port = htons((uint16_t)opt->port);
	if (inet_pton(AF_INET, opt->host, &addr->sin_addr) != 1 ||
	    (ntohl(addr->sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr,
		        "loadgen: invalid --host \"%s\": only IPv4 loopback addresses "
		        "(127.0.0.0/8) are accepted\n",
		        opt->host);
		return false;
	}
	return true;
}

static bool parse_options(int argc, char **argv, struct options *opt, struct sockaddr_in *addr)
{
	const char *env_key = getenv("STEMEDB_API_KEY");

	if (argc < 2 || !parse_mode(argv[1], opt))
		return false;
	if (env_key != NULL && env_key[0] != '\0' && !set_api_key(opt, "STEMEDB_API_KEY", env_key))
		return false;
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 >= argc) {
			fprintf(stderr, "loadgen: option \"%s\" needs a value\n", argv[i]);
			return false;
		}
		if (!parse_option(opt, argv[i], argv[i + 1]))
			return false;
	}
	return options_check(opt, addr);
}

/* ---- main ----------------------------------------------------------------------------------- */

static bool workload_init(struct workload *w, const struct options *opt)
{
	memset(w, 0, sizeof(*w));
	w->opt = opt;
	if (opt->mode == MODE_PRELOAD)
		w->total_items = opt->subjects * opt->per_subject;
	else if (opt->mode == MODE_WARMUP)
		w->total_items = opt->per_agent * AGENT_COUNT;
	else
		w->total_items = opt->count;
	workload_make_agents(w);
	if (opt->copy_out == NULL)
		return true;

	w->copy_out = fopen(opt->copy_out, "w");
	if (w->copy_out == NULL) {
		fprintf(stderr, "loadgen: fopen(\"%s\") failed: %s\n", opt->copy_out,
		        strerror(errno));
		return false;
	}
	return true;
}

static bool workload_finish(struct workload *w)
{
	bool ok = true;

	if (w->copy_out != NULL && fclose(w->copy_out) != 0) {
		fprintf(stderr, "loadgen: writing \"%s\" failed: %s\n", w->opt->copy_out,
		        strerror(errno));
		ok = false;
	}
	for (long i = 0; i < w->prebuilt_count; i++)
		buf_free(&w->prebuilt[i].bytes);
	free(w->prebuilt);
	sodium_memzero(w->agents, sizeof(w->agents));
	return ok;
}

static bool driver_init(struct driver *d, const struct options *opt, struct workload *w)
{
	memset(d, 0, sizeof(*d));
	d->opt = opt;
	d->work = w;
	d->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	d->conns = calloc((size_t)opt->clients, sizeof(*d->conns));
	if (d->epoll_fd < 0 || d->conns == NULL) {
		fprintf(stderr, "loadgen: epoll_create1 or allocation failed: %s\n",
		        strerror(errno));
		return false;
	}
	for (long i = 0; i < opt->clients; i++) {
		d->conns[i].fd = -1;
		buf_init(&d->conns[i].in);
	}
	return true;
}

static void driver_free(struct driver *d)
{
	for (long i = 0; d->conns != NULL && i < d->opt->clients; i++) {
		conn_close(d, &d->conns[i]);
		buf_free(&d->conns[i].in);
	}
	free(d->conns);
	free(d->stats.latencies_ms);
	if (d->epoll_fd >= 0)
		close(d->epoll_fd);
}

static bool run_ok(const struct driver *d)
{
	const struct stats *s = &d->stats;
	bool exists_allowed = d->opt->mode == MODE_PRELOAD || d->opt->mode == MODE_VOTES;

	bool quarantine_allowed = d->opt->mode == MODE_WARMUP;

	if (!exists_allowed && s->exists > 0)
		fprintf(stderr, "loadgen: %ld claims already existed; use a new --tag per run\n",
		        s->exists);
	if (!quarantine_allowed && s->quarantined > 0)
		fprintf(stderr,
		        "loadgen: content defense quarantined %ld claims; use --distinct-subjects "
		        "on against a node with STEMEDB_CONTENT_DEFENSE_ENABLED=true\n",
		        s->quarantined);
	return !d->work->failed && s->http_errors == 0 && s->transport_errors == 0 &&
	       s->rejected == 0 && (exists_allowed || s->exists == 0) &&
	       (quarantine_allowed || s->quarantined == 0);
}

int main(int argc, char **argv)
{
	struct options opt = {.host = "127.0.0.1",
	                      .clients = 4,
	                      .batch_size = 500,
	                      .per_subject = 10,
	                      .vote_percent = 10,
	                      .per_agent = 50,
	                      .max_seconds = 120,
	                      .tag = "run"};
	struct sockaddr_in addr;
	struct workload work;
	struct driver driver = {.epoll_fd = -1};
	double gen_start;
	double gen_seconds;
	bool ok;

	if (!parse_options(argc, argv, &opt, &addr))
		return 2;
	if (sodium_init() < 0 || !workload_init(&work, &opt))
		return 1;

	gen_start = now_seconds();
	ok = opt.mode == MODE_PRELOAD || workload_prebuild(&work);
	gen_seconds = now_seconds() - gen_start;
	if (ok && driver_init(&driver, &opt, &work)) {
		driver.addr = addr;
		ok = driver_run(&driver);
		print_result(&driver, gen_seconds);
		ok = ok && run_ok(&driver);
	} else {
		ok = false;
	}

	driver_free(&driver);
	ok = workload_finish(&work) && ok;
	return ok ? 0 : 1;
}
