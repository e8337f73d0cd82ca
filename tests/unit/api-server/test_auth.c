/* Unit tests of API keys: the key text, hashing, scopes, the stored value and the key
 * table against a real store (root key bootstrap, create, revoke). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "store.h"

#define ROOT_KEY_A                                                                                 \
	"sdb_0123456789abcdef_"                                                                    \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define ROOT_KEY_B                                                                                 \
	"sdb_fedcba9876543210_"                                                                    \
	"ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static void test_key_parse_format_round_trip(void **state)
{
	uint8_t id[API_KEY_ID_LEN], secret[API_KEY_SECRET_LEN];
	char text[API_KEY_TEXT_LEN + 1];

	(void)state;
	assert_true(api_key_parse(ROOT_KEY_A, strlen(ROOT_KEY_A), id, secret));
	assert_int_equal(id[0], 0x01);
	assert_int_equal(secret[31], 0xff);
	api_key_format(id, secret, text);
	assert_string_equal(text, ROOT_KEY_A);
}

static void test_key_parse_rejects_malformed(void **state)
{
	static const char *const bad[] = {
	        "",
	        "sdb_0123456789abcdef",
	        /* upper-case hex */
	        "sdb_0123456789ABCDEF_"
	        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	        /* wrong prefix */
	        "sdk_0123456789abcdef_"
	        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	        /* '-' in place of '_' */
	        "sdb_0123456789abcdef-"
	        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	        /* a non-hex character */
	        "sdb_0123456789abcdeg_"
	        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	        /* one character too many */
	        "sdb_0123456789abcdef_"
	        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0",
	};
	uint8_t id[API_KEY_ID_LEN], secret[API_KEY_SECRET_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(api_key_parse(bad[i], strlen(bad[i]), id, secret));
}

static void test_key_hash_matches_blake2b(void **state)
{
	uint8_t salt[API_KEY_SALT_LEN], secret[API_KEY_SECRET_LEN], joined[48];
	uint8_t expected[API_KEY_HASH_LEN], got[API_KEY_HASH_LEN];

	(void)state;
	memset(salt, 0x11, sizeof(salt));
	memset(secret, 0x22, sizeof(secret));
	memcpy(joined, salt, sizeof(salt));
	memcpy(joined + sizeof(salt), secret, sizeof(secret));
	crypto_generichash(expected, sizeof(expected), joined, sizeof(joined), NULL, 0);
	api_key_hash(salt, secret, got);
	assert_memory_equal(got, expected, sizeof(got));
}

static void test_key_secret_matches_only_own(void **state)
{
	struct api_key key = {0};
	uint8_t secret[API_KEY_SECRET_LEN], other[API_KEY_SECRET_LEN];

	(void)state;
	randombytes_buf(key.salt, sizeof(key.salt));
	memset(secret, 0x33, sizeof(secret));
	memcpy(other, secret, sizeof(other));
	other[31] ^= 1;
	api_key_hash(key.salt, secret, key.hash);
	assert_true(api_key_secret_matches(&key, secret));
	assert_false(api_key_secret_matches(&key, other));
}

static void test_scopes_allow(void **state)
{
	(void)state;
	assert_true(api_key_scopes_allow(API_KEY_SCOPE_READ, API_KEY_SCOPE_READ));
	assert_false(api_key_scopes_allow(API_KEY_SCOPE_READ, API_KEY_SCOPE_WRITE));
	assert_false(api_key_scopes_allow(API_KEY_SCOPE_WRITE, API_KEY_SCOPE_READ));
	assert_true(api_key_scopes_allow(API_KEY_SCOPE_ADMIN, API_KEY_SCOPE_READ));
	assert_true(api_key_scopes_allow(API_KEY_SCOPE_ADMIN, API_KEY_SCOPE_WRITE));
	assert_false(api_key_scopes_allow(0, API_KEY_SCOPE_READ));
}

static void test_scopes_parse_and_format(void **state)
{
	unsigned scopes;
	char text[32];

	(void)state;
	assert_true(api_key_scopes_parse("write,read", &scopes));
	assert_int_equal(scopes, API_KEY_SCOPE_READ | API_KEY_SCOPE_WRITE);
	api_key_scopes_format(scopes, text, sizeof(text));
	assert_string_equal(text, "read,write");
	assert_true(api_key_scopes_parse("admin", &scopes));
	assert_int_equal(scopes, API_KEY_SCOPE_ADMIN);
	assert_false(api_key_scopes_parse("", &scopes));
	assert_false(api_key_scopes_parse("read,", &scopes));
	assert_false(api_key_scopes_parse("reader", &scopes));
	assert_false(api_key_scopes_parse("read,owner", &scopes));
}

static void test_key_encode_decode(void **state)
{
	struct api_key key = {0}, back;
	char *value;
	size_t len;

	(void)state;
	memset(key.id, 0xab, sizeof(key.id));
	memset(key.salt, 1, sizeof(key.salt));
	memset(key.hash, 2, sizeof(key.hash));
	snprintf(key.name, sizeof(key.name), "importer \"one\"");
	key.scopes = API_KEY_SCOPE_WRITE;
	key.agent_bound = true;
	memset(key.agent, 3, sizeof(key.agent));
	key.created_ms = 1700000000123;
	key.revoked_ms = 1700000000999;
	value = api_key_encode(&key, &len);
	assert_null(strstr(value, "sdb_"));
	assert_true(api_key_decode(key.id, (const uint8_t *)value, len, &back));
	assert_memory_equal(&back.id, key.id, sizeof(key.id));
	assert_memory_equal(back.salt, key.salt, sizeof(key.salt));
	assert_memory_equal(back.hash, key.hash, sizeof(key.hash));
	assert_string_equal(back.name, key.name);
	assert_int_equal(back.scopes, key.scopes);
	assert_true(back.agent_bound);
	assert_memory_equal(back.agent, key.agent, sizeof(key.agent));
	assert_int_equal(back.created_ms, key.created_ms);
	assert_int_equal(back.revoked_ms, key.revoked_ms);
	assert_false(back.root);
	assert_false(api_key_decode(key.id, (const uint8_t *)"{}", 2, &back));
	free(value);
}

/* ---- the key table against a real store ---- */

struct fixture {
	char root[64];
	char path[96];
	struct store *store;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static struct store *open_store(const char *path)
{
	char err[256];
	struct store *s = store_open(path, err, sizeof(err));

	if (s == NULL)
		fail_msg("store_open: %s", err);
	return s;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL || sodium_init() < 0)
		return -1;
	strcpy(f->root, "/tmp/stemedb-test-auth-XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/db", f->root);
	f->store = open_store(f->path);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	auth_stop();
	if (f->store != NULL)
		store_close(f->store);
	nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Restarts the table on a reopened store, as a daemon restart does. */
static void restart(struct fixture *f, const char *root_key)
{
	struct auth_settings settings = {.enabled = true, .root_key = root_key};
	char err[256];

	auth_stop();
	store_close(f->store);
	f->store = open_store(f->path);
	if (!auth_start(f->store, &settings, err, sizeof(err)))
		fail_msg("auth_start: %s", err);
}

static size_t count_live_roots(void)
{
	size_t count, live = 0;
	struct api_key *keys = auth_list_keys(&count);

	for (size_t i = 0; i < count; i++)
		live += keys[i].root && keys[i].revoked_ms == 0;
	free(keys);
	return live;
}

static void test_root_key_idempotent(void **state)
{
	struct fixture *f = *state;
	struct api_key key, first;
	size_t count;
	struct api_key *keys;

	restart(f, ROOT_KEY_A);
	assert_true(auth_verify_text(ROOT_KEY_A, strlen(ROOT_KEY_A), &first));
	assert_int_equal(first.scopes, API_KEY_SCOPES_ALL);
	restart(f, ROOT_KEY_A);
	assert_true(auth_verify_text(ROOT_KEY_A, strlen(ROOT_KEY_A), &key));
	/* The same value stores nothing new: same salt and creation time. */
	assert_memory_equal(key.salt, first.salt, sizeof(key.salt));
	assert_int_equal(key.created_ms, first.created_ms);
	keys = auth_list_keys(&count);
	assert_int_equal(count, 1);
	free(keys);
}

static void test_root_key_rotation(void **state)
{
	struct fixture *f = *state;
	struct api_key key;

	restart(f, ROOT_KEY_A);
	restart(f, ROOT_KEY_B);
	assert_false(auth_verify_text(ROOT_KEY_A, strlen(ROOT_KEY_A), &key));
	assert_true(auth_verify_text(ROOT_KEY_B, strlen(ROOT_KEY_B), &key));
	assert_int_equal(count_live_roots(), 1);
}

static void test_root_key_malformed_rejected(void **state)
{
	struct fixture *f = *state;
	struct auth_settings settings = {.enabled = true, .root_key = "sdb_short"};
	char err[256];

	assert_false(auth_start(f->store, &settings, err, sizeof(err)));
	assert_non_null(strstr(err, "STEMEDB_ROOT_API_KEY"));
}

static void test_create_revoke_survive_restart(void **state)
{
	struct fixture *f = *state;
	struct api_key created, key;
	char text[API_KEY_TEXT_LEN + 1], err[256];
	uint8_t agent[STEMEDB_AGENT_ID_LEN];

	restart(f, "");
	memset(agent, 5, sizeof(agent));
	assert_true(auth_create_key("reader", API_KEY_SCOPE_READ, agent, &created, text, err,
	                            sizeof(err)));
	assert_true(auth_verify_text(text, strlen(text), &key));
	assert_true(key.agent_bound);

	restart(f, "");
	assert_true(auth_verify_text(text, strlen(text), &key));
	assert_int_equal(auth_revoke_key(created.id, &key), 1);
	assert_false(auth_verify_text(text, strlen(text), &key));
	assert_int_equal(auth_revoke_key(created.id, &key), 0);

	restart(f, "");
	assert_false(auth_verify_text(text, strlen(text), &key));
	memset(key.id, 0, sizeof(key.id));
	assert_int_equal(auth_revoke_key(key.id, &key), -1);
}

static void test_verify_rejects_wrong_secret(void **state)
{
	struct fixture *f = *state;
	struct api_key created, key;
	char text[API_KEY_TEXT_LEN + 1], err[256];

	restart(f, "");
	assert_true(
	        auth_create_key("", API_KEY_SCOPE_WRITE, NULL, &created, text, err, sizeof(err)));
	text[API_KEY_TEXT_LEN - 1] = text[API_KEY_TEXT_LEN - 1] == '0' ? '1' : '0';
	assert_false(auth_verify_text(text, strlen(text), &key));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_key_parse_format_round_trip),
	        cmocka_unit_test(test_key_parse_rejects_malformed),
	        cmocka_unit_test(test_key_hash_matches_blake2b),
	        cmocka_unit_test(test_key_secret_matches_only_own),
	        cmocka_unit_test(test_scopes_allow),
	        cmocka_unit_test(test_scopes_parse_and_format),
	        cmocka_unit_test(test_key_encode_decode),
	        cmocka_unit_test_setup_teardown(test_root_key_idempotent, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_root_key_rotation, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_root_key_malformed_rejected, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_create_revoke_survive_restart, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_verify_rejects_wrong_secret, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
