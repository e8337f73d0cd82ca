/* API keys: the key format, hashing, the stored value, the in-memory table and the
 * per-request check. */
#include "auth.h"

#include <event2/http.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_server.h"
#include "http_util.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"
#include "store.h"

static bool is_lower_hex(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

bool api_key_parse(const char *text, size_t len, uint8_t id[API_KEY_ID_LEN],
                   uint8_t secret[API_KEY_SECRET_LEN])
{
	const char *id_hex = text + 4;
	const char *secret_hex = id_hex + API_KEY_ID_HEX_LEN + 1;

	if (len != API_KEY_TEXT_LEN || memcmp(text, API_KEY_PREFIX, 4) != 0 ||
	    id_hex[API_KEY_ID_HEX_LEN] != '_')
		return false;
	if (!is_lower_hex(id_hex, API_KEY_ID_HEX_LEN) ||
	    !is_lower_hex(secret_hex, 2 * API_KEY_SECRET_LEN))
		return false;
	return hex_decode(id_hex, API_KEY_ID_HEX_LEN, id, API_KEY_ID_LEN) &&
	       hex_decode(secret_hex, 2 * API_KEY_SECRET_LEN, secret, API_KEY_SECRET_LEN);
}

void api_key_format(const uint8_t id[API_KEY_ID_LEN], const uint8_t secret[API_KEY_SECRET_LEN],
                    char out[API_KEY_TEXT_LEN + 1])
{
	memcpy(out, API_KEY_PREFIX, 4);
	hex_encode(id, API_KEY_ID_LEN, out + 4);
	out[4 + API_KEY_ID_HEX_LEN] = '_';
	hex_encode(secret, API_KEY_SECRET_LEN, out + 4 + API_KEY_ID_HEX_LEN + 1);
}

void api_key_hash(const uint8_t salt[API_KEY_SALT_LEN], const uint8_t secret[API_KEY_SECRET_LEN],
                  uint8_t out[API_KEY_HASH_LEN])
{
	crypto_generichash_state state;

	crypto_generichash_init(&state, NULL, 0, API_KEY_HASH_LEN);
	crypto_generichash_update(&state, salt, API_KEY_SALT_LEN);
	crypto_generichash_update(&state, secret, API_KEY_SECRET_LEN);
	crypto_generichash_final(&state, out, API_KEY_HASH_LEN);
}

bool api_key_secret_matches(const struct api_key *key, const uint8_t secret[API_KEY_SECRET_LEN])
{
	uint8_t hash[API_KEY_HASH_LEN];
	bool match;

	api_key_hash(key->salt, secret, hash);
	match = sodium_memcmp(hash, key->hash, API_KEY_HASH_LEN) == 0;
	sodium_memzero(hash, sizeof(hash));
	return match;
}

bool api_key_scopes_allow(unsigned scopes, enum api_key_scope needed)
{
	if ((scopes & API_KEY_SCOPE_ADMIN) != 0)
		return true;
	return (scopes & (unsigned)needed) != 0;
}

static const struct {
	const char *name;
	enum api_key_scope scope;
} scope_names[] = {
        {"read", API_KEY_SCOPE_READ},
        {"write", API_KEY_SCOPE_WRITE},
        {"admin", API_KEY_SCOPE_ADMIN},
};

static bool scope_from_name(const char *name, size_t len, unsigned *scope)
{
	for (size_t i = 0; i < 3; i++) {
		if (strlen(scope_names[i].name) == len &&
		    memcmp(scope_names[i].name, name, len) == 0) {
			*scope = scope_names[i].scope;
			return true;
		}
	}
	return false;
}

bool api_key_scopes_parse(const char *text, unsigned *scopes)
{
	const char *p = text;

	*scopes = 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		unsigned scope;

		if (!scope_from_name(p, len, &scope))
			return false;
		*scopes |= scope;
		if (comma == NULL)
			return *scopes != 0;
		p = comma + 1;
	}
}

void api_key_scopes_format(unsigned scopes, char *out, size_t out_size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < 3; i++) {
		if ((scopes & scope_names[i].scope) == 0)
			continue;
		used += (size_t)snprintf(out + used, out_size > used ? out_size - used : 0, "%s%s",
		                         used > 0 ? "," : "", scope_names[i].name);
	}
}

char *api_key_encode(const struct api_key *key, size_t *len)
{
	char salt[2 * API_KEY_SALT_LEN + 1], hash[2 * API_KEY_HASH_LEN + 1];
	char agent[2 * STEMEDB_AGENT_ID_LEN + 1], scopes[32];
	json_t *obj;
	char *text;

	hex_encode(key->salt, API_KEY_SALT_LEN, salt);
	hex_encode(key->hash, API_KEY_HASH_LEN, hash);
	api_key_scopes_format(key->scopes, scopes, sizeof(scopes));
	obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b}", "salt", salt, "hash", hash, "name",
	                key->name, "scopes", scopes, "created_ms", (json_int_t)key->created_ms,
	                "revoked_ms", (json_int_t)key->revoked_ms, "root", key->root);
	if (obj == NULL)
		abort();
	if (key->agent_bound) {
		hex_encode(key->agent, STEMEDB_AGENT_ID_LEN, agent);
		json_object_set_new(obj, "agent", json_string(agent));
	}
	text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	if (text == NULL)
		abort();
	*len = strlen(text);
	return text;
}

static bool decode_hex_field(json_t *obj, const char *name, uint8_t *out, size_t len)
{
	const char *text = json_string_value(json_object_get(obj, name));

	return text != NULL && hex_decode(text, strlen(text), out, len);
}

bool api_key_decode(const uint8_t id[API_KEY_ID_LEN], const uint8_t *value, size_t len,
                    struct api_key *key)
{
	json_t *obj = json_loadb((const char *)value, len, 0, NULL);
	const char *name, *scopes;
	json_t *agent;
	bool ok = false;

	memset(key, 0, sizeof(*key));
	memcpy(key->id, id, API_KEY_ID_LEN);
	if (obj == NULL)
		return false;
	name = json_string_value(json_object_get(obj, "name"));
	scopes = json_string_value(json_object_get(obj, "scopes"));
	agent = json_object_get(obj, "agent");
	if (name == NULL || strlen(name) > API_KEY_NAME_MAX || scopes == NULL ||
	    !api_key_scopes_parse(scopes, &key->scopes) ||
	    !decode_hex_field(obj, "salt", key->salt, API_KEY_SALT_LEN) ||
	    !decode_hex_field(obj, "hash", key->hash, API_KEY_HASH_LEN) ||
	    !json_is_integer(json_object_get(obj, "created_ms")) ||
	    !json_is_integer(json_object_get(obj, "revoked_ms")))
		goto done;
	if (agent != NULL && !decode_hex_field(obj, "agent", key->agent, STEMEDB_AGENT_ID_LEN))
		goto done;
	snprintf(key->name, sizeof(key->name), "%s", name);
	key->agent_bound = agent != NULL;
	key->created_ms = (uint64_t)json_integer_value(json_object_get(obj, "created_ms"));
	key->revoked_ms = (uint64_t)json_integer_value(json_object_get(obj, "revoked_ms"));
	key->root = json_is_true(json_object_get(obj, "root"));
	ok = true;
done:
	json_decref(obj);
	return ok;
}

/* ---- the key table ---- */

/* Keys sorted by id, so lookups are a binary search. Revoked keys stay, for the list.
 * Workers take the read lock, and create and revoke take the write lock. */
static struct {
	pthread_rwlock_t lock;
	struct api_key *keys;
	size_t count;
	size_t capacity;
	struct store *store;
	bool enabled;
} table = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Returns the index of id, or the insertion point as -(index + 1). Caller holds the
 * lock. */
static long table_find(const uint8_t id[API_KEY_ID_LEN])
{
	size_t lo = 0, hi = table.count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(table.keys[mid].id, id, API_KEY_ID_LEN);

		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

/* Inserts or replaces key. Caller holds the write lock. */
static void table_put(const struct api_key *key)
{
	long at = table_find(key->id);
	size_t slot;

	if (at >= 0) {
		table.keys[at] = *key;
		return;
	}
	slot = (size_t)(-at - 1);
	if (table.count == table.capacity) {
		size_t capacity = table.capacity == 0 ? 16 : table.capacity * 2;
		struct api_key *keys = realloc(table.keys, capacity * sizeof(*keys));

		if (keys == NULL)
			abort();
		table.keys = keys;
		table.capacity = capacity;
	}
	memmove(&table.keys[slot + 1], &table.keys[slot],
	        (table.count - slot) * sizeof(*table.keys));
	table.keys[slot] = *key;
	table.count++;
}

static void store_key_of(const uint8_t id[API_KEY_ID_LEN], uint8_t out[1 + API_KEY_ID_LEN])
{
	out[0] = API_KEY_STORE_PREFIX;
	memcpy(out + 1, id, API_KEY_ID_LEN);
}

static bool save_key(const struct api_key *key)
{
	uint8_t store_key[1 + API_KEY_ID_LEN];
	size_t len;
	char *value = api_key_encode(key, &len);
	enum store_result r;

	store_key_of(key->id, store_key);
	r = store_protect_put(table.store, store_key, sizeof(store_key), value, len);
	free(value);
	return r == STORE_OK;
}

struct load_context {
	size_t loaded;
	size_t malformed;
};

static bool load_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                     size_t value_len)
{
	struct load_context *load = ctx;
	struct api_key k;
	char id[API_KEY_ID_HEX_LEN + 1];

	if (key_len != 1 + API_KEY_ID_LEN || !api_key_decode(key + 1, value, value_len, &k)) {
		load->malformed++;
		if (key_len == 1 + API_KEY_ID_LEN) {
			hex_encode(key + 1, API_KEY_ID_LEN, id);
			log_error(
			        "the stored API key %s is malformed and is ignored; revoke it and "
			        "create a new one",
			        id);
		}
		return true;
	}
	table_put(&k);
	load->loaded++;
	return true;
}

/* Stores the root key from STEMEDB_ROOT_API_KEY unless it is stored already. A root key
 * with another id or secret is revoked, so that the new value replaces it. */
static bool apply_root_key(const char *text, char *err, size_t err_size)
{
	uint8_t id[API_KEY_ID_LEN], secret[API_KEY_SECRET_LEN];
	char id_hex[API_KEY_ID_HEX_LEN + 1];
	struct api_key root = {0};
	bool rotated = false;

	if (!api_key_parse(text, strlen(text), id, secret)) {
		snprintf(err, err_size,
		         "STEMEDB_ROOT_API_KEY is not a valid API key: it must be \"sdb_\", 16 "
		         "lowercase hex digits, \"_\" and 64 lowercase hex digits; generate one "
		         "with `stemedb-ctl keys generate`");
		return false;
	}
	hex_encode(id, API_KEY_ID_LEN, id_hex);

	for (size_t i = 0; i < table.count; i++) {
		struct api_key *k = &table.keys[i];

		if (!k->root || k->revoked_ms != 0)
			continue;
		if (memcmp(k->id, id, API_KEY_ID_LEN) == 0 && api_key_secret_matches(k, secret)) {
			sodium_memzero(secret, sizeof(secret));
			log_info("root API key %s is stored already", id_hex);
			return true;
		}
		k->revoked_ms = unix_ms();
		if (!save_key(k)) {
			snprintf(err, err_size,
			         "revoking the previous root API key failed; see the "
			         "RocksDB error above");
			return false;
		}
		rotated = true;
	}

	memcpy(root.id, id, API_KEY_ID_LEN);
	randombytes_buf(root.salt, sizeof(root.salt));
	api_key_hash(root.salt, secret, root.hash);
	sodium_memzero(secret, sizeof(secret));
	snprintf(root.name, sizeof(root.name), "root");
	root.scopes = API_KEY_SCOPES_ALL;
	root.created_ms = unix_ms();
	root.root = true;
	if (!save_key(&root)) {
		snprintf(err, err_size,
		         "storing the root API key failed; see the RocksDB error above");
		return false;
	}
	table_put(&root);
	if (rotated)
		log_info("root API key rotated: STEMEDB_ROOT_API_KEY changed, the new root key is "
		         "%s and the previous one is revoked",
		         id_hex);
	else
		log_info("root API key %s stored from STEMEDB_ROOT_API_KEY", id_hex);
	return true;
}

bool auth_start(struct store *store, const struct auth_settings *settings, char *err,
                size_t err_size)
{
	struct load_context load = {0};
	uint8_t prefix = API_KEY_STORE_PREFIX;
	bool ok = true;

	pthread_rwlock_wrlock(&table.lock);
	table.store = store;
	table.enabled = settings->enabled;
	if (store_protect_scan(store, &prefix, 1, load_one, &load) != STORE_OK) {
		snprintf(err, err_size,
		         "reading the stored API keys failed; see the RocksDB error "
		         "above");
		ok = false;
	}
	if (ok && settings->root_key != NULL && settings->root_key[0] != '\0')
		ok = apply_root_key(settings->root_key, err, err_size);
	pthread_rwlock_unlock(&table.lock);
	if (ok)
		log_info("API keys: %zu loaded, %zu malformed, checks %s", load.loaded,
		         load.malformed,
		         settings->enabled ? "on (STEMEDB_AUTH_ENABLED=true)" : "off");
	return ok;
}

void auth_stop(void)
{
	pthread_rwlock_wrlock(&table.lock);
	free(table.keys);
	table.keys = NULL;
	table.count = 0;
	table.capacity = 0;
	table.store = NULL;
	pthread_rwlock_unlock(&table.lock);
}

bool auth_create_key(const char *name, unsigned scopes, const uint8_t *agent,
                     struct api_key *created, char text[API_KEY_TEXT_LEN + 1], char *err,
                     size_t err_size)
{
	uint8_t secret[API_KEY_SECRET_LEN];
	struct api_key key = {0};
	char id_hex[API_KEY_ID_HEX_LEN + 1], scope_text[32];

	if (strlen(name) > API_KEY_NAME_MAX || (scopes & ~(unsigned)API_KEY_SCOPES_ALL) != 0 ||
	    scopes == 0) {
		snprintf(err, err_size,
		         "name must have at most %d bytes and scopes must be a "
		         "non-empty set of read, write and admin",
		         API_KEY_NAME_MAX);
		return false;
	}
	snprintf(key.name, sizeof(key.name), "%s", name);
	key.scopes = scopes;
	if (agent != NULL) {
		key.agent_bound = true;
		memcpy(key.agent, agent, STEMEDB_AGENT_ID_LEN);
	}
	randombytes_buf(secret, sizeof(secret));
	randombytes_buf(key.salt, sizeof(key.salt));
	api_key_hash(key.salt, secret, key.hash);
	key.created_ms = unix_ms();

	pthread_rwlock_wrlock(&table.lock);
	if (table.store == NULL) {
		pthread_rwlock_unlock(&table.lock);
		snprintf(err, err_size, "the API key table is not loaded");
		return false;
	}
	/* A random 64-bit id collides with an existing one with negligible probability,
	 * but drawing again keeps ids unique for certain. */
	do {
		randombytes_buf(key.id, sizeof(key.id));
	} while (table_find(key.id) >= 0);
	if (!save_key(&key)) {
		pthread_rwlock_unlock(&table.lock);
		sodium_memzero(secret, sizeof(secret));
		hex_encode(key.id, API_KEY_ID_LEN, id_hex);
		log_error("creating API key %s failed: the store write failed", id_hex);
		snprintf(err, err_size, "storing the API key failed; see the stemedb-api log");
		return false;
	}
	table_put(&key);
	pthread_rwlock_unlock(&table.lock);

	api_key_format(key.id, secret, text);
	sodium_memzero(secret, sizeof(secret));
	*created = key;
	hex_encode(key.id, API_KEY_ID_LEN, id_hex);
	api_key_scopes_format(key.scopes, scope_text, sizeof(scope_text));
	log_info("created API key %s (name \"%s\", scopes %s, agent bound: %s)", id_hex, key.name,
	         scope_text, key.agent_bound ? "yes" : "no");
	return true;
}

int auth_revoke_key(const uint8_t id[API_KEY_ID_LEN], struct api_key *key)
{
	char id_hex[API_KEY_ID_HEX_LEN + 1];
	struct api_key updated;
	long at;

	hex_encode(id, API_KEY_ID_LEN, id_hex);
	pthread_rwlock_wrlock(&table.lock);
	at = table.store != NULL ? table_find(id) : -1;
	if (at < 0) {
		pthread_rwlock_unlock(&table.lock);
		return -1;
	}
	if (table.keys[at].revoked_ms != 0) {
		*key = table.keys[at];
		pthread_rwlock_unlock(&table.lock);
		return 0;
	}
	updated = table.keys[at];
	updated.revoked_ms = unix_ms();
	if (!save_key(&updated)) {
		pthread_rwlock_unlock(&table.lock);
		log_error("revoking API key %s failed: the store write failed", id_hex);
		return -2;
	}
	table.keys[at] = updated;
	*key = updated;
	pthread_rwlock_unlock(&table.lock);
	log_info("revoked API key %s", id_hex);
	return 1;
}

struct api_key *auth_list_keys(size_t *count)
{
	struct api_key *copy;

	pthread_rwlock_rdlock(&table.lock);
	copy = malloc((table.count > 0 ? table.count : 1) * sizeof(*copy));
	if (copy == NULL)
		abort();
	if (table.count > 0)
		memcpy(copy, table.keys, table.count * sizeof(*copy));
	*count = table.count;
	pthread_rwlock_unlock(&table.lock);
	return copy;
}

bool auth_verify_text(const char *text, size_t len, struct api_key *key)
{
	uint8_t id[API_KEY_ID_LEN], secret[API_KEY_SECRET_LEN];
	bool ok = false;
	long at;

	if (!api_key_parse(text, len, id, secret))
		return false;
	pthread_rwlock_rdlock(&table.lock);
	at = table_find(id);
	if (at >= 0 && table.keys[at].revoked_ms == 0 &&
	    api_key_secret_matches(&table.keys[at], secret)) {
		*key = table.keys[at];
		ok = true;
	}
	pthread_rwlock_unlock(&table.lock);
	sodium_memzero(secret, sizeof(secret));
	return ok;
}

/* ---- the per-request check ---- */

/* Parses X-Agent-Id into call->agent unless protect_http_identify already did.
 * Replies 400 and returns false when malformed. */
static bool read_agent_header(struct http_call *call)
{
	const char *value =
	        evhttp_find_header(evhttp_request_get_input_headers(call->req), "X-Agent-Id");

	if (value == NULL || call->agent_from_header)
		return true;
	if (strlen(value) != 2 * STEMEDB_AGENT_ID_LEN ||
	    !is_lower_hex(value, 2 * STEMEDB_AGENT_ID_LEN) ||
	    !hex_decode(value, 2 * STEMEDB_AGENT_ID_LEN, call->agent, STEMEDB_AGENT_ID_LEN)) {
		http_reply_error(call, 400, "invalid_header", "X-Agent-Id",
		                 "The X-Agent-Id header must be the agent's Ed25519 public key as "
		                 "64 lowercase hex characters.");
		return false;
	}
	call->agent_known = true;
	call->agent_from_header = true;
	return true;
}

bool auth_check(struct http_call *call)
{
	const char *text;
	struct api_key key;
	enum api_key_scope needed;
	char id_hex[API_KEY_ID_HEX_LEN + 1];

	if (!table.enabled || call->route_class == HTTP_ROUTE_CLASS_EXEMPT)
		return true;
	text = evhttp_find_header(evhttp_request_get_input_headers(call->req), "X-API-Key");
	if (text == NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "WWW-Authenticate",
		                  "ApiKey header=\"X-API-Key\"");
		http_reply_error(
		        call, 401, "missing_api_key", "X-API-Key",
		        "This endpoint requires an API key in the X-API-Key header; ask an "
		        "operator for one (stemedb-ctl keys create).");
		return false;
	}
	if (!auth_verify_text(text, strlen(text), &key)) {
		http_reply_error(call, 401, "invalid_api_key", "X-API-Key",
		                 "The X-API-Key header is not a valid API key: it is malformed, "
		                 "unknown or revoked; send a current key.");
		return false;
	}
	hex_encode(key.id, API_KEY_ID_LEN, id_hex);
	needed = call->route_class == HTTP_ROUTE_CLASS_WRITE ? API_KEY_SCOPE_WRITE
	                                                     : API_KEY_SCOPE_READ;
	if (!api_key_scopes_allow(key.scopes, needed)) {
		http_reply_error(call, 403, "insufficient_scope", "X-API-Key",
		                 "API key %s lacks the %s scope that %s %s needs; use a key with "
		                 "that scope.",
		                 id_hex, needed == API_KEY_SCOPE_WRITE ? "write" : "read",
		                 call->method_name, call->path);
		return false;
	}

	call->key_known = true;
	memcpy(call->key_id, key.id, API_KEY_ID_LEN);
	call->key_agent_bound = key.agent_bound;
	memcpy(call->key_agent, key.agent, STEMEDB_AGENT_ID_LEN);
	if (!read_agent_header(call))
		return false;
	if (key.agent_bound && call->agent_from_header &&
	    sodium_memcmp(call->agent, key.agent, STEMEDB_AGENT_ID_LEN) != 0) {
		http_reply_error(call, 403, "agent_not_allowed", "X-Agent-Id",
		                 "API key %s is bound to another agent than X-Agent-Id; send "
		                 "requests of this agent with its own key.",
		                 id_hex);
		return false;
	}
	return true;
}

bool auth_check_signer(struct http_call *call, const uint8_t agent[STEMEDB_AGENT_ID_LEN])
{
	char id_hex[API_KEY_ID_HEX_LEN + 1];

	if (!call->key_known || !call->key_agent_bound || call->agent_from_header)
		return true;
	if (sodium_memcmp(agent, call->key_agent, STEMEDB_AGENT_ID_LEN) == 0)
		return true;
	hex_encode(call->key_id, API_KEY_ID_LEN, id_hex);
	http_reply_error(call, 403, "agent_not_allowed", "signatures",
	                 "API key %s is bound to another agent than the signer of this write; "
	                 "sign with the bound agent or use that agent's key.",
	                 id_hex);
	return false;
}
