#include "defense.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stemedb/hex.h"
#include "stemedb/log.h"
#include "stemedb/metrics.h"
#include "trust.h"

/* MinHash hash i of a shingle x is (a_i * x + b_i) mod (2^61 - 1), a universal family.
 * a_i and b_i come from splitmix64 with a fixed seed, so every node and every restart
 * computes the same signatures. */
#define MERSENNE_61  ((1ull << 61) - 1)
#define MINHASH_SEED 0x5354454d45444201ull

/* Quality weights; docs/protection.md explains each part. */
#define QUALITY_WEIGHT_ENTROPY   0.4
#define QUALITY_WEIGHT_LENGTH    0.2
#define QUALITY_WEIGHT_STRUCTURE 0.2
#define QUALITY_WEIGHT_TRUST     0.2
/* Entropy is normalized by log2 of the length, capped at this many bytes. */
#define ENTROPY_NORMALIZE_BYTES 64
/* Subject and predicate count as long enough with at least this many distinct bytes. */
#define LENGTH_MIN_DISTINCT 3

/* A filter of the LSH buckets that have at least one 'l' key: 2^28 bits (32 MiB), one
 * bit per (band, bucket) hash. A clear bit proves the bucket empty, so the writer skips
 * the RocksDB seek, which dominated its cost. A set bit may be a collision, which
 * costs only that seek. Only the writer thread and start-up use it. */
#define BUCKET_FILTER_BITS_LOG2 28

static uint64_t *bucket_filter;

struct defense_window_item {
	uint8_t hash[STEMEDB_HASH_LEN];
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	uint32_t signature[DEFENSE_HASHES];
	uint64_t bands[DEFENSE_BANDS];
};

static uint64_t coeff_a[DEFENSE_HASHES];
static uint64_t coeff_b[DEFENSE_HASHES];
static bool coeff_ready;

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Fills the coefficients; idempotent, and every thread computes the same values, so a
 * race between two first calls writes identical numbers. */
static void init_coefficients(void)
{
	uint64_t state = MINHASH_SEED;

	if (coeff_ready)
		return;
	for (size_t i = 0; i < DEFENSE_HASHES; i++) {
		coeff_a[i] = splitmix64(&state) % (MERSENNE_61 - 1) + 1;
		coeff_b[i] = splitmix64(&state) % MERSENNE_61;
	}
	coeff_ready = true;
}

static uint64_t mod_mersenne61(unsigned __int128 x)
{
	uint64_t r = (uint64_t)(x & MERSENNE_61) + (uint64_t)(x >> 61);

	r = (r & MERSENNE_61) + (r >> 61);
	return r >= MERSENNE_61 ? r - MERSENNE_61 : r;
}

void defense_render_text(const struct assertion *a, struct buf *out)
{
	char number[64];

	buf_append(out, a->subject, a->subject_len);
	buf_put_u8(out, 0x1f);
	buf_append(out, a->predicate, a->predicate_len);
	buf_put_u8(out, 0x1f);
	switch (a->object.type) {
	case OBJECT_NUMBER:
		snprintf(number, sizeof(number), "%.17g", a->object.number);
		buf_append(out, number, strlen(number));
		break;
	case OBJECT_BOOLEAN:
		buf_append(out, a->object.boolean ? "true" : "false", a->object.boolean ? 4 : 5);
		break;
	case OBJECT_TEXT:
	case OBJECT_REFERENCE:
	default:
		buf_append(out, a->object.text, a->object.text_len);
		break;
	}
}

void defense_minhash(const uint8_t *text, size_t len, uint32_t signature[DEFENSE_HASHES])
{
	uint64_t mins[DEFENSE_HASHES];
	size_t shingles = len >= 3 ? len - 2 : 1;

	init_coefficients();
	for (size_t i = 0; i < DEFENSE_HASHES; i++)
		mins[i] = UINT64_MAX;

	for (size_t s = 0; s < shingles; s++) {
		/* A text shorter than 3 bytes is one shingle of itself. */
		uint64_t x = 0;

		for (size_t k = 0; k < 3 && s + k < len; k++)
			x = (x << 8) | text[s + k];
		x |= (uint64_t)(len - s < 3 ? len - s : 3) << 24;
		for (size_t i = 0; i < DEFENSE_HASHES; i++) {
			uint64_t h = mod_mersenne61((unsigned __int128)coeff_a[i] * x + coeff_b[i]);

			if (h < mins[i])
				mins[i] = h;
		}
	}
	for (size_t i = 0; i < DEFENSE_HASHES; i++)
		signature[i] = (uint32_t)(mins[i] ^ (mins[i] >> 32));
}

double defense_similarity(const uint32_t *a, const uint32_t *b)
{
	size_t equal = 0;

	for (size_t i = 0; i < DEFENSE_HASHES; i++)
		equal += a[i] == b[i];
	return (double)equal / DEFENSE_HASHES;
}

uint64_t defense_band_hash(const uint32_t signature[DEFENSE_HASHES], size_t band)
{
	/* FNV-1a over the band's 32 bytes, little-endian. */
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t r = 0; r < DEFENSE_ROWS; r++) {
		uint32_t v = signature[band * DEFENSE_ROWS + r];

		for (int k = 0; k < 4; k++) {
			h ^= (v >> (8 * k)) & 0xff;
			h *= 0x100000001b3ull;
		}
	}
	return h;
}

double defense_normalized_entropy(const uint8_t *bytes, size_t len)
{
	size_t counts[256] = {0};
	double entropy = 0.0;
	size_t cap = len < ENTROPY_NORMALIZE_BYTES ? len : ENTROPY_NORMALIZE_BYTES;

	if (len < 2)
		return 0.0;
	for (size_t i = 0; i < len; i++)
		counts[bytes[i]]++;
	for (size_t c = 0; c < 256; c++) {
		double p;

		if (counts[c] == 0)
			continue;
		p = (double)counts[c] / (double)len;
		entropy -= p * log2(p);
	}
	entropy /= log2((double)cap);
	return entropy > 1.0 ? 1.0 : entropy;
}

static size_t distinct_bytes(const char *s, size_t len)
{
	bool seen[256] = {false};
	size_t count = 0;

	for (size_t i = 0; i < len; i++) {
		uint8_t c = (uint8_t)s[i];

		count += !seen[c];
		seen[c] = true;
	}
	return count;
}

static bool starts_with(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

/* Structure: a number or boolean object, an object that is a URL, or a text object
 * that starts with '{' or '[' and ends with the matching bracket (JSON). */
static double structure_score(const struct object_value *o)
{
	if (o->type == OBJECT_NUMBER || o->type == OBJECT_BOOLEAN)
		return 1.0;
	if (o->text == NULL || o->text_len == 0)
		return 0.0;
	if (starts_with(o->text, o->text_len, "http://") ||
	    starts_with(o->text, o->text_len, "https://"))
		return 1.0;
	if ((o->text[0] == '{' && o->text[o->text_len - 1] == '}') ||
	    (o->text[0] == '[' && o->text[o->text_len - 1] == ']'))
		return 1.0;
	return 0.0;
}

void defense_prepare(const struct assertion *a, struct defense_input *out)
{
	struct buf text;
	double subject_entropy, text_entropy;

	buf_init(&text);
	defense_render_text(a, &text);
	defense_minhash(text.data, text.len, out->signature);

	subject_entropy = defense_normalized_entropy((const uint8_t *)a->subject, a->subject_len);
	text_entropy = defense_normalized_entropy(text.data, text.len);
	out->entropy_score = subject_entropy < text_entropy ? subject_entropy : text_entropy;
	out->length_score =
	        0.5 * (distinct_bytes(a->subject, a->subject_len) >= LENGTH_MIN_DISTINCT) +
	        0.5 * (distinct_bytes(a->predicate, a->predicate_len) >= LENGTH_MIN_DISTINCT);
	out->structure_score = structure_score(&a->object);
	buf_free(&text);
}

double defense_quality(const struct defense_input *in, bool untrusted_high_confidence)
{
	return QUALITY_WEIGHT_ENTROPY * in->entropy_score +
	       QUALITY_WEIGHT_LENGTH * in->length_score +
	       QUALITY_WEIGHT_STRUCTURE * in->structure_score +
	       QUALITY_WEIGHT_TRUST * (untrusted_high_confidence ? 0.0 : 1.0);
}

/* ---- names and the stored entry ---- */

static const char *const REASON_NAMES[DEFENSE_REASON_COUNT] = {"none", "duplicate", "low_quality",
                                                               "untrusted_high_confidence"};
static const char *const STATUS_NAMES[3] = {"pending", "approved", "rejected"};

const char *defense_reason_name(enum defense_reason reason)
{
	return (unsigned)reason < DEFENSE_REASON_COUNT ? REASON_NAMES[reason] : "unknown";
}

bool defense_reason_parse(const char *name, enum defense_reason *out)
{
	for (int i = 1; i < DEFENSE_REASON_COUNT; i++) {
		if (strcmp(name, REASON_NAMES[i]) == 0) {
			*out = (enum defense_reason)i;
			return true;
		}
	}
	return false;
}

const char *quarantine_status_name(enum quarantine_status status)
{
	return (unsigned)status < 3 ? STATUS_NAMES[status] : "unknown";
}

bool quarantine_status_parse(const char *name, enum quarantine_status *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(name, STATUS_NAMES[i]) == 0) {
			*out = (enum quarantine_status)i;
			return true;
		}
	}
	return false;
}

/* Layout (92 bytes): version 1, reason, status, has_resembled, quality and similarity
 * in millionths (u32 LE each), agent (32), resembled hash (32), created_ms and
 * decided_ms (u64 LE each). The status byte is at STORE_QUARANTINE_STATUS_AT. */
void quarantine_entry_encode(const struct quarantine_entry *e, uint8_t out[QUARANTINE_VALUE_LEN])
{
	memset(out, 0, QUARANTINE_VALUE_LEN);
	out[0] = 1;
	out[1] = (uint8_t)e->reason;
	out[STORE_QUARANTINE_STATUS_AT] = (uint8_t)e->status;
	out[3] = e->has_resembled ? 1 : 0;
	store_u32le(out + 4, (uint32_t)lround(e->quality * 1e6));
	store_u32le(out + 8, (uint32_t)lround(e->similarity * 1e6));
	memcpy(out + 12, e->agent, STEMEDB_AGENT_ID_LEN);
	if (e->has_resembled)
		memcpy(out + 44, e->resembled, STEMEDB_HASH_LEN);
	store_u64le(out + 76, e->created_ms);
	store_u64le(out + 84, e->decided_ms);
}

bool quarantine_entry_decode(const uint8_t *v, size_t len, struct quarantine_entry *e)
{
	if (len != QUARANTINE_VALUE_LEN || v[0] != 1 || v[1] == 0 || v[1] >= DEFENSE_REASON_COUNT ||
	    v[2] > QUARANTINE_REJECTED)
		return false;
	memset(e, 0, sizeof(*e));
	e->reason = (enum defense_reason)v[1];
	e->status = (enum quarantine_status)v[2];
	e->has_resembled = v[3] == 1;
	e->quality = load_u32le(v + 4) / 1e6;
	e->similarity = load_u32le(v + 8) / 1e6;
	memcpy(e->agent, v + 12, STEMEDB_AGENT_ID_LEN);
	memcpy(e->resembled, v + 44, STEMEDB_HASH_LEN);
	e->created_ms = load_u64le(v + 76);
	e->decided_ms = load_u64le(v + 84);
	return true;
}

enum store_result quarantine_get(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                 struct quarantine_entry *entry)
{
	uint8_t key[QUARANTINE_KEY_LEN];
	struct buf value;
	enum store_result rc;

	key[0] = QUARANTINE_KIND;
	memcpy(key + 1, hash, STEMEDB_HASH_LEN);
	buf_init(&value);
	rc = store_protect_get(s, key, sizeof(key), &value);
	if (rc == STORE_OK && !quarantine_entry_decode(value.data, value.len, entry)) {
		log_error("the quarantine entry of an assertion has an unknown layout (%zu bytes)",
		          value.len);
		rc = STORE_ERROR;
	}
	buf_free(&value);
	return rc;
}

json_t *quarantine_entry_json(const struct quarantine_entry *entry)
{
	char agent[2 * STEMEDB_AGENT_ID_LEN + 1];
	char resembled[2 * STEMEDB_HASH_LEN + 1];
	json_t *out;

	hex_encode(entry->agent, STEMEDB_AGENT_ID_LEN, agent);
	out = json_pack("{s:s, s:s, s:f, s:s, s:I}", "status",
	                quarantine_status_name(entry->status), "reason",
	                defense_reason_name(entry->reason), "quality", entry->quality, "agent_id",
	                agent, "created_ms", (json_int_t)entry->created_ms);
	if (entry->has_resembled) {
		hex_encode(entry->resembled, STEMEDB_HASH_LEN, resembled);
		json_object_set_new(out, "resembles", json_string(resembled));
		json_object_set_new(out, "similarity", json_real(entry->similarity));
	}
	if (entry->decided_ms != 0)
		json_object_set_new(out, "decided_ms", json_integer((json_int_t)entry->decided_ms));
	return out;
}

/* ---- the writer's decision ---- */

void defense_window_init(struct defense_window *w)
{
	memset(w, 0, sizeof(*w));
}

void defense_window_clear(struct defense_window *w)
{
	w->count = 0;
	store_protect_view_free(w->view);
	w->view = NULL;
}

void defense_window_free(struct defense_window *w)
{
	store_protect_view_free(w->view);
	free(w->items);
	memset(w, 0, sizeof(*w));
}

static struct defense_window_item *window_add(struct defense_window *w)
{
	if (w->count == w->cap) {
		w->cap = w->cap == 0 ? 64 : 2 * w->cap;
		w->items = realloc(w->items, w->cap * sizeof(*w->items));
		if (w->items == NULL)
			abort();
	}
	return &w->items[w->count++];
}

/* The best match from another agent seen so far. */
struct match {
	double similarity;
	bool found;
	uint8_t hash[STEMEDB_HASH_LEN];
};

static void consider(struct match *m, const uint8_t *hash, const uint8_t *their_agent,
                     const uint32_t *their_signature, const uint8_t *agent,
                     const uint32_t *signature, double threshold)
{
	double similarity;

	if (memcmp(their_agent, agent, STEMEDB_AGENT_ID_LEN) == 0)
		return;
	similarity = defense_similarity(signature, their_signature);
	/* Equal similarities go to the smaller hash, so that the order in which the store
	 * and the window list candidates (which replay changes) does not matter. */
	if (similarity >= threshold &&
	    (!m->found || similarity > m->similarity ||
	     (similarity == m->similarity && memcmp(hash, m->hash, STEMEDB_HASH_LEN) < 0))) {
		m->found = true;
		m->similarity = similarity;
		memcpy(m->hash, hash, STEMEDB_HASH_LEN);
	}
}

static size_t bucket_bit(size_t band, uint64_t bucket)
{
	uint64_t state = bucket ^ ((uint64_t)band << 56);

	return (size_t)(splitmix64(&state) >> (64 - BUCKET_FILTER_BITS_LOG2));
}

static void filter_set(size_t band, uint64_t bucket)
{
	size_t bit = bucket_bit(band, bucket);

	if (bucket_filter != NULL)
		bucket_filter[bit / 64] |= 1ull << (bit % 64);
}

/* False only when no stored assertion has this bucket; true without the filter. */
static bool filter_may_contain(size_t band, uint64_t bucket)
{
	size_t bit = bucket_bit(band, bucket);

	return bucket_filter == NULL || (bucket_filter[bit / 64] >> (bit % 64)) & 1u;
}

static bool on_stored_bucket(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                             size_t value_len)
{
	(void)value;
	(void)value_len;
	if (key_len == 10 + STEMEDB_HASH_LEN && key[1] < DEFENSE_BANDS) {
		filter_set(key[1], load_u64be(key + 2));
		(*(uint64_t *)ctx)++;
	}
	return true;
}

enum store_result defense_filter_load(struct store *s)
{
	uint8_t prefix = LSH_KIND;
	uint64_t keys = 0;
	enum store_result rc;

	if (bucket_filter == NULL) {
		bucket_filter = calloc((1ull << BUCKET_FILTER_BITS_LOG2) / 64, sizeof(uint64_t));
		if (bucket_filter == NULL)
			abort();
	}
	rc = store_protect_scan(s, &prefix, 1, on_stored_bucket, &keys);
	log_info("content defense: loaded %llu LSH bucket keys into the %d MiB bucket filter",
	         (unsigned long long)keys, (1 << BUCKET_FILTER_BITS_LOG2) / 8 / 1024 / 1024);
	return rc;
}

static void lsh_key(uint8_t key[1 + 1 + 8 + STEMEDB_HASH_LEN], size_t band, uint64_t bucket,
                    const uint8_t *hash)
{
	key[0] = LSH_KIND;
	key[1] = (uint8_t)band;
	store_u64be(key + 2, bucket);
	if (hash != NULL)
		memcpy(key + 10, hash, STEMEDB_HASH_LEN);
}

/* Other agents' assertions whose signatures one lookup has read already. */
#define FETCHED_MAX 64

struct bucket_scan {
	struct store *store;
	const uint8_t *agent;
	const uint32_t *signature;
	double threshold;
	struct match *match;
	size_t seen;
	bool failed;
	struct buf value;
	uint8_t fetched[FETCHED_MAX][STEMEDB_HASH_LEN];
	size_t fetched_count;
};

/* Returns true when hash was fetched before; else remembers it (while there is room). */
static bool fetched_before(struct bucket_scan *scan, const uint8_t *hash)
{
	for (size_t i = 0; i < scan->fetched_count; i++) {
		if (memcmp(scan->fetched[i], hash, STEMEDB_HASH_LEN) == 0)
			return true;
	}
	if (scan->fetched_count < FETCHED_MAX)
		memcpy(scan->fetched[scan->fetched_count++], hash, STEMEDB_HASH_LEN);
	return false;
}

static bool on_bucket_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                          size_t value_len)
{
	struct bucket_scan *scan = ctx;
	uint8_t minhash_key[1 + STEMEDB_HASH_LEN];
	const uint8_t *hash = key + 10;
	uint32_t theirs[DEFENSE_HASHES];
	enum store_result rc;

	/* The value is the candidate's agent: the same agent's assertions are skipped
	 * without reading their signatures. */
	if (key_len != 10 + STEMEDB_HASH_LEN || value_len != STEMEDB_AGENT_ID_LEN)
		return true;
	if (memcmp(value, scan->agent, STEMEDB_AGENT_ID_LEN) == 0 || fetched_before(scan, hash))
		return ++scan->seen < DEFENSE_BUCKET_SCAN_MAX;
	minhash_key[0] = MINHASH_KIND;
	memcpy(minhash_key + 1, hash, STEMEDB_HASH_LEN);
	rc = store_protect_get(scan->store, minhash_key, sizeof(minhash_key), &scan->value);
	if (rc == STORE_ERROR) {
		scan->failed = true;
		return false;
	}
	if (rc == STORE_OK && scan->value.len == STEMEDB_AGENT_ID_LEN + DEFENSE_SIGNATURE_SIZE) {
		for (size_t i = 0; i < DEFENSE_HASHES; i++)
			theirs[i] = load_u32le(scan->value.data + STEMEDB_AGENT_ID_LEN + 4 * i);
		consider(scan->match, hash, scan->value.data, theirs, scan->agent, scan->signature,
		         scan->threshold);
	}
	return ++scan->seen < DEFENSE_BUCKET_SCAN_MAX;
}

/* Looks for the most similar assertion of another agent in the store's LSH buckets and
 * in the window. */
static bool find_duplicate(struct store *s, const struct defense_config *config,
                           struct defense_window *window, const uint8_t *agent,
                           const uint32_t *signature, const uint64_t *bands, struct match *m)
{
	struct bucket_scan scan = {.store = s,
	                           .agent = agent,
	                           .signature = signature,
	                           .threshold = config->duplicate_similarity,
	                           .match = m};
	uint8_t prefix[10 + STEMEDB_HASH_LEN];

	buf_init(&scan.value);
	if (window->view == NULL)
		window->view = store_protect_view_new(s);
	for (size_t band = 0; band < DEFENSE_BANDS && !scan.failed; band++) {
		if (!filter_may_contain(band, bands[band]))
			continue;
		lsh_key(prefix, band, bands[band], NULL);
		scan.seen = 0;
		if (store_protect_view_scan(window->view, prefix, 10, on_bucket_key, &scan) !=
		    STORE_OK)
			scan.failed = true;
	}
	buf_free(&scan.value);

	for (size_t i = 0; i < window->count; i++) {
		const struct defense_window_item *item = &window->items[i];
		bool shares_band = false;

		for (size_t band = 0; band < DEFENSE_BANDS && !shares_band; band++)
			shares_band = item->bands[band] == bands[band];
		if (shares_band)
			consider(m, item->hash, item->agent, item->signature, agent, signature,
			         config->duplicate_similarity);
	}
	return !scan.failed;
}

/* Stores the MinHash signature of every checked assertion ('m'), so that an approval
 * can add its bands later. */
static void put_minhash_key(struct store_batch *batch, const uint8_t *hash, const uint8_t *agent,
                            const uint32_t *signature)
{
	uint8_t minhash_key[1 + STEMEDB_HASH_LEN];
	uint8_t value[STEMEDB_AGENT_ID_LEN + DEFENSE_SIGNATURE_SIZE];

	minhash_key[0] = MINHASH_KIND;
	memcpy(minhash_key + 1, hash, STEMEDB_HASH_LEN);
	memcpy(value, agent, STEMEDB_AGENT_ID_LEN);
	for (size_t i = 0; i < DEFENSE_HASHES; i++)
		store_u32le(value + STEMEDB_AGENT_ID_LEN + 4 * i, signature[i]);
	store_batch_put_protect(batch, minhash_key, sizeof(minhash_key), value, sizeof(value));
}

/* Makes an assertion a duplicate candidate for later ones: its LSH band keys ('l'). */
static void put_band_keys(struct store_batch *batch, const uint8_t *hash, const uint8_t *agent,
                          const uint64_t *bands)
{
	uint8_t key[10 + STEMEDB_HASH_LEN];

	for (size_t band = 0; band < DEFENSE_BANDS; band++) {
		lsh_key(key, band, bands[band], hash);
		store_batch_put_protect(batch, key, sizeof(key), agent, STEMEDB_AGENT_ID_LEN);
		filter_set(band, bands[band]);
	}
}

enum store_result defense_batch_put_approved(struct store *s, struct store_batch *batch,
                                             const uint8_t hash[STEMEDB_HASH_LEN])
{
	uint8_t minhash_key[1 + STEMEDB_HASH_LEN];
	uint32_t signature[DEFENSE_HASHES];
	uint64_t bands[DEFENSE_BANDS];
	struct buf value;
	enum store_result rc;

	minhash_key[0] = MINHASH_KIND;
	memcpy(minhash_key + 1, hash, STEMEDB_HASH_LEN);
	buf_init(&value);
	rc = store_protect_get(s, minhash_key, sizeof(minhash_key), &value);
	if (rc == STORE_OK && value.len == STEMEDB_AGENT_ID_LEN + DEFENSE_SIGNATURE_SIZE) {
		for (size_t i = 0; i < DEFENSE_HASHES; i++)
			signature[i] = load_u32le(value.data + STEMEDB_AGENT_ID_LEN + 4 * i);
		for (size_t band = 0; band < DEFENSE_BANDS; band++)
			bands[band] = defense_band_hash(signature, band);
		put_band_keys(batch, hash, value.data, bands);
	} else if (rc == STORE_NOT_FOUND) {
		rc = STORE_OK; /* checked before signatures were stored: nothing to add */
	} else if (rc == STORE_OK) {
		rc = STORE_ERROR;
	}
	buf_free(&value);
	return rc;
}

static void window_remember(struct defense_window *window, const uint8_t *hash,
                            const uint8_t *agent, const uint32_t *signature, const uint64_t *bands)
{
	struct defense_window_item *item = window_add(window);

	memcpy(item->hash, hash, STEMEDB_HASH_LEN);
	memcpy(item->agent, agent, STEMEDB_AGENT_ID_LEN);
	memcpy(item->signature, signature, sizeof(item->signature));
	memcpy(item->bands, bands, sizeof(item->bands));
}

/* Fills verdict from a stored quarantine entry of hash, if there is one. */
static bool load_existing(struct store *s, const uint8_t *hash, struct defense_verdict *verdict)
{
	uint8_t key[QUARANTINE_KEY_LEN];
	struct quarantine_entry entry;
	struct buf value;
	enum store_result rc;

	key[0] = QUARANTINE_KIND;
	memcpy(key + 1, hash, STEMEDB_HASH_LEN);
	buf_init(&value);
	rc = store_protect_get(s, key, sizeof(key), &value);
	if (rc == STORE_OK && quarantine_entry_decode(value.data, value.len, &entry)) {
		verdict->existing = true;
		verdict->reason = entry.reason;
		verdict->status = entry.status;
		verdict->quality = entry.quality;
		verdict->similarity = entry.similarity;
		verdict->has_resembled = entry.has_resembled;
		memcpy(verdict->resembled, entry.resembled, STEMEDB_HASH_LEN);
	}
	buf_free(&value);
	return rc != STORE_ERROR;
}

static bool decide(struct store *s, const struct defense_config *config,
                   struct defense_window *window, const struct assertion *a,
                   const uint8_t hash[STEMEDB_HASH_LEN], const struct defense_input *in,
                   uint64_t hlc_wall_ms, bool replay, struct store_batch *batch,
                   struct defense_verdict *verdict)
{
	const uint8_t *agent = a->signatures[0].agent_id;
	uint64_t bands[DEFENSE_BANDS];
	struct match match = {0};
	bool untrusted_high = false;
	double trust = 0.5;

	memset(verdict, 0, sizeof(*verdict));
	if (replay && !load_existing(s, hash, verdict))
		return false;
	for (size_t band = 0; band < DEFENSE_BANDS; band++)
		bands[band] = defense_band_hash(in->signature, band);

	if (!find_duplicate(s, config, window, agent, in->signature, bands, &match))
		return false;

	/* Trust is read at the assertion's HLC time from the outcomes recorded up to then,
	 * so a replay of the same WAL record reads the same value. */
	if (a->confidence_micro > (uint32_t)llround(config->high_confidence * 1e6)) {
		if (trust_of_agent_at(s, agent, hlc_wall_ms / 1000u, &trust) != STORE_OK)
			return false;
		untrusted_high = trust < config->untrusted_below;
	}

	if (!verdict->existing) {
		verdict->quality = defense_quality(in, untrusted_high);
		if (match.found) {
			verdict->reason = DEFENSE_DUPLICATE;
			verdict->similarity = match.similarity;
			verdict->has_resembled = true;
			memcpy(verdict->resembled, match.hash, STEMEDB_HASH_LEN);
		} else if (untrusted_high) {
			verdict->reason = DEFENSE_UNTRUSTED_HIGH_CONFIDENCE;
		} else if (verdict->quality < config->min_quality) {
			verdict->reason = DEFENSE_LOW_QUALITY;
		}
	}

	/* Only an admitted assertion becomes a duplicate candidate. Otherwise an agent could
	 * post near-copies of claims it expects another agent to make, and have those
	 * quarantined: its own copies would sit in quarantine as the earlier text. An
	 * approval adds the bands (defense_batch_put_approved). */
	put_minhash_key(batch, hash, agent, in->signature);
	if (verdict->reason == DEFENSE_NONE) {
		put_band_keys(batch, hash, agent, bands);
		window_remember(window, hash, agent, in->signature, bands);
	}
	if (verdict->existing)
		return true;

	if (verdict->reason != DEFENSE_NONE) {
		struct quarantine_entry entry = {.reason = verdict->reason,
		                                 .status = QUARANTINE_PENDING,
		                                 .quality = verdict->quality,
		                                 .similarity = verdict->similarity,
		                                 .has_resembled = verdict->has_resembled,
		                                 .created_ms = hlc_wall_ms};
		uint8_t key[QUARANTINE_KEY_LEN];
		uint8_t value[QUARANTINE_VALUE_LEN];

		memcpy(entry.resembled, verdict->resembled, STEMEDB_HASH_LEN);
		memcpy(entry.agent, agent, STEMEDB_AGENT_ID_LEN);
		quarantine_entry_encode(&entry, value);
		key[0] = QUARANTINE_KIND;
		memcpy(key + 1, hash, STEMEDB_HASH_LEN);
		store_batch_put_protect(batch, key, sizeof(key), value, sizeof(value));
	}
	return true;
}

static struct histogram *decide_duration;

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

bool defense_decide(struct store *s, const struct defense_config *config,
                    struct defense_window *window, const struct assertion *a,
                    const uint8_t hash[STEMEDB_HASH_LEN], const struct defense_input *in,
                    uint64_t hlc_wall_ms, bool replay, struct store_batch *batch,
                    struct defense_verdict *verdict)
{
	struct timespec start, end;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &start);
	ok = decide(s, config, window, a, hash, in, hlc_wall_ms, replay, batch, verdict);
	clock_gettime(CLOCK_MONOTONIC, &end);
	if (decide_duration != NULL)
		histogram_observe(decide_duration, seconds_between(&start, &end));
	return ok;
}

/* ---- metrics ---- */

static _Atomic int64_t pending_count;
static struct metric *pending_gauge;
static struct metric_family *quarantined_total;

void defense_metrics_register(void)
{
	static const char *const labels[] = {"reason", NULL};

	pending_gauge = metrics_gauge("stemedb_quarantine_pending",
	                              "Assertions in quarantine that wait for an admin decision.");
	static const double bounds[] = {1e-6,   5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4,
	                                2.5e-4, 5e-4, 1e-3, 5e-3,   1e-2};

	decide_duration = metrics_histogram(
	        "stemedb_content_defense_check_seconds",
	        "Time the commit writer spends on the content defense decision of one assertion.",
	        bounds, sizeof(bounds) / sizeof(bounds[0]));
	quarantined_total = metrics_counter_family(
	        "stemedb_assertions_quarantined_total",
	        "Assertions put in quarantine since start, WAL replay included, by reason.",
	        labels);
}

static bool count_pending_entry(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                                size_t value_len)
{
	struct quarantine_entry entry;

	(void)key;
	if (key_len == QUARANTINE_KEY_LEN && quarantine_entry_decode(value, value_len, &entry) &&
	    entry.status == QUARANTINE_PENDING)
		(*(int64_t *)ctx)++;
	return true;
}

enum store_result defense_count_pending(struct store *s)
{
	uint8_t prefix = QUARANTINE_KIND;
	int64_t count = 0;
	enum store_result rc = store_protect_scan(s, &prefix, 1, count_pending_entry, &count);

	atomic_store(&pending_count, count);
	if (pending_gauge != NULL)
		metric_set(pending_gauge, (double)count);
	return rc;
}

void defense_pending_add(int64_t delta)
{
	int64_t now = atomic_fetch_add(&pending_count, delta) + delta;

	if (pending_gauge != NULL)
		metric_set(pending_gauge, (double)now);
}

uint64_t defense_pending(void)
{
	int64_t now = atomic_load(&pending_count);

	return now > 0 ? (uint64_t)now : 0;
}

void defense_count_quarantined(enum defense_reason reason)
{
	const char *values[1] = {defense_reason_name(reason)};

	if (quarantined_total != NULL)
		metric_inc(metrics_family_child(quarantined_total, values));
}
