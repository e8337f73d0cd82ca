#ifndef STEMEDB_AUTH_H
#define STEMEDB_AUTH_H
/* API keys of stemedb-api. A key is the text "sdb_" + 16 hex digits of key id + "_" + 64
 * hex digits of secret. Only the key id, a random salt and BLAKE2b-256(salt || secret)
 * are stored, in the "protect" column family under kind byte 'k' (docs/storage.md).
 * An in-memory table contains every key. It is loaded at start and updated under a lock
 * on create and revoke. So a check reads no RocksDB, and every worker rejects a
 * revoked key from the next request on. docs/protection.md describes the rules. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/assertion.h"

struct http_call;
struct store;

#define API_KEY_ID_LEN       8
#define API_KEY_SECRET_LEN   32
#define API_KEY_SALT_LEN     16
#define API_KEY_HASH_LEN     32
#define API_KEY_PREFIX       "sdb_"
#define API_KEY_TEXT_LEN     (4 + 2 * API_KEY_ID_LEN + 1 + 2 * API_KEY_SECRET_LEN)
#define API_KEY_NAME_MAX     128
#define API_KEY_ID_HEX_LEN   (2 * API_KEY_ID_LEN)
#define API_KEY_STORE_PREFIX 'k'

enum api_key_scope {
	API_KEY_SCOPE_READ = 1u << 0,
	API_KEY_SCOPE_WRITE = 1u << 1,
	API_KEY_SCOPE_ADMIN = 1u << 2,
};
#define API_KEY_SCOPES_ALL (API_KEY_SCOPE_READ | API_KEY_SCOPE_WRITE | API_KEY_SCOPE_ADMIN)

/* One stored key, without its secret. */
struct api_key {
	uint8_t id[API_KEY_ID_LEN];
	uint8_t salt[API_KEY_SALT_LEN];
	uint8_t hash[API_KEY_HASH_LEN];
	char name[API_KEY_NAME_MAX + 1];
	unsigned scopes; /* enum api_key_scope bits */
	bool agent_bound;
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	uint64_t created_ms; /* Unix milliseconds */
	uint64_t revoked_ms; /* 0 while the key is valid */
	bool root;           /* bootstrapped from STEMEDB_ROOT_API_KEY */
};

/* Splits a key text into its id and secret. Returns false when the text does not
 * have the form sdb_<16 lowercase hex>_<64 lowercase hex>. */
bool api_key_parse(const char *text, size_t len, uint8_t id[API_KEY_ID_LEN],
                   uint8_t secret[API_KEY_SECRET_LEN]);
/* Writes the key text (API_KEY_TEXT_LEN characters and a NUL) into out. */
void api_key_format(const uint8_t id[API_KEY_ID_LEN], const uint8_t secret[API_KEY_SECRET_LEN],
                    char out[API_KEY_TEXT_LEN + 1]);
/* Computes BLAKE2b-256(salt || secret). */
void api_key_hash(const uint8_t salt[API_KEY_SALT_LEN], const uint8_t secret[API_KEY_SECRET_LEN],
                  uint8_t out[API_KEY_HASH_LEN]);
/* Returns true when secret hashes to the key's stored hash, compared in constant
 * time. */
bool api_key_secret_matches(const struct api_key *key, const uint8_t secret[API_KEY_SECRET_LEN]);
/* Returns true when scopes grant the needed scope. Admin grants read and write too. */
bool api_key_scopes_allow(unsigned scopes, enum api_key_scope needed);
/* Parses a comma-separated list of "read", "write" and "admin" into *scopes. Returns
 * false on an empty list or an unknown name. */
bool api_key_scopes_parse(const char *text, unsigned *scopes);
/* Writes the scope names, comma-separated, into out (at least 32 bytes). */
void api_key_scopes_format(unsigned scopes, char *out, size_t out_size);
/* Encodes a key as its stored value (JSON text, without a NUL) into a malloc'd buffer. */
char *api_key_encode(const struct api_key *key, size_t *len);
/* Decodes a stored value. Returns false when it is malformed. */
bool api_key_decode(const uint8_t id[API_KEY_ID_LEN], const uint8_t *value, size_t len,
                    struct api_key *key);

/* ---- the key table of the running daemon ---- */

struct auth_settings {
	bool enabled;         /* STEMEDB_AUTH_ENABLED */
	const char *root_key; /* STEMEDB_ROOT_API_KEY, or "" */
};

/* Loads every stored key into the table and applies the root key. Returns false with
 * a message in err when the root key is malformed or the store fails. */
bool auth_start(struct store *store, const struct auth_settings *settings, char *err,
                size_t err_size);
/* Frees the table. */
void auth_stop(void);

/* Creates a key, stores it (synced) and adds it to the table. On success fills
 * *created and writes the key text, shown only once, into text. */
bool auth_create_key(const char *name, unsigned scopes, const uint8_t *agent,
                     struct api_key *created, char text[API_KEY_TEXT_LEN + 1], char *err,
                     size_t err_size);
/* Marks a key revoked in the store and the table. Returns 1 when revoked now, 0 when
 * it was revoked before, -1 when not found and -2 on a storage error. */
int auth_revoke_key(const uint8_t id[API_KEY_ID_LEN], struct api_key *key);
/* Copies every key, in id order, into a malloc'd array whose length goes to *count. */
struct api_key *auth_list_keys(size_t *count);
/* Looks up the key text and checks its secret. Returns true and fills *key when the
 * key exists, is not revoked and matches. */
bool auth_verify_text(const char *text, size_t len, struct api_key *key);

/* Checks the X-API-Key of a request against the scope its method needs, and the
 * X-Agent-Id header against a key's agent binding. Replies 401, 403 or 400 and returns
 * false when the request is rejected. Health, ready and metrics are exempt. */
bool auth_check(struct http_call *call);
/* Checks the signer of a signed write against the agent binding of the request's key,
 * for requests without X-Agent-Id. Replies 403 and returns false on a mismatch. */
bool auth_check_signer(struct http_call *call, const uint8_t agent[STEMEDB_AGENT_ID_LEN]);

#endif
