/* Query audit records: the binary encoding round-trips every field through
 * audit_log_get, and JSON records that older versions stored stay readable. */

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

#include "audit.h"
#include "stemedb/hex.h"
#include "store.h"

#define RETENTION_SECONDS 3600

struct fixture {
	char root[64];
	struct store *store;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[128];
	char err[512] = "";

	if (f == NULL || sodium_init() < 0)
		return -1;
	strcpy(f->root, "/tmp/stemedb-test-audit-XXXXXX");
	if (mkdtemp(f->root) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/db", f->root);
	f->store = store_open(path, err, sizeof(err));
	if (f->store == NULL)
		fail_msg("store_open(%s) failed: %s", path, err);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->store);
	nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct audit_log *start_log(struct fixture *f)
{
	char err[256] = "";
	struct audit_log *log = audit_log_start(f->store, RETENTION_SECONDS, err, sizeof(err));

	if (log == NULL)
		fail_msg("audit_log_start failed: %s", err);
	return log;
}

static void assert_string_field(const json_t *record, const char *key, const char *expected)
{
	const char *value = json_string_value(json_object_get(record, key));

	if (value == NULL || strcmp(value, expected) != 0)
		fail_msg("field %s is %s, expected %s", key,
		         value != NULL ? value : "(not a string)", expected);
}

static void test_binary_record_round_trip(void **state)
{
	struct fixture *f = *state;
	uint8_t agent[STEMEDB_AGENT_ID_LEN], winner[STEMEDB_HASH_LEN], hash[STEMEDB_HASH_LEN];
	char agent_hex[2 * STEMEDB_AGENT_ID_LEN + 1], winner_hex[2 * STEMEDB_HASH_LEN + 1];
	struct audit_log *log = start_log(f);
	const json_t *contributors;
	struct audit_entry e;
	uint8_t id[AUDIT_ID_LEN];
	char id_hex[AUDIT_ID_HEX_LEN + 1];
	uint64_t time_ms;
	json_t *record = NULL;

	memset(agent, 0xaa, sizeof(agent));
	memset(winner, 0x11, sizeof(winner));
	hex_encode(agent, sizeof(agent), agent_hex);
	hex_encode(winner, sizeof(winner), winner_hex);
	audit_entry_init(&e, "skeptic", agent);
	memcpy(id, e.id, sizeof(id));
	memcpy(id_hex, e.id_hex, sizeof(id_hex));
	time_ms = e.time_ms;
	audit_entry_add_parameter(&e, "subject", "drug/\"x\"\n", 10);
	audit_entry_add_parameter(&e, "predicate", "treats", 6);
	audit_entry_set_winner(&e, winner);
	for (int i = 0; i < AUDIT_CONTRIBUTORS_MAX + 5; i++) {
		memset(hash, i, sizeof(hash));
		audit_entry_add(&e, hash, 0.1 * i);
	}
	audit_log_submit(log, &e);
	audit_log_stop(log); /* stores the queue */

	log = start_log(f);
	assert_int_equal(audit_log_get(log, id, &record), AUDIT_OK);
	assert_string_field(record, "query_id", id_hex);
	assert_int_equal(json_integer_value(json_object_get(record, "time_ms")), time_ms);
	assert_string_field(record, "endpoint", "skeptic");
	assert_string_field(record, "agent_id", agent_hex);
	assert_string_field(json_object_get(record, "parameters"), "subject", "drug/\"x\"\n");
	assert_string_field(json_object_get(record, "parameters"), "predicate", "treats");
	assert_int_equal(json_object_size(json_object_get(record, "parameters")), 2);
	assert_string_field(record, "winner", winner_hex);
	assert_int_equal(json_integer_value(json_object_get(record, "contributor_count")),
	                 AUDIT_CONTRIBUTORS_MAX + 5);
	contributors = json_object_get(record, "contributors");
	assert_int_equal(json_array_size(contributors), AUDIT_CONTRIBUTORS_MAX);
	/* Weights come back as the exact doubles that were added. */
	assert_true(json_real_value(json_object_get(json_array_get(contributors, 7), "weight")) ==
	            0.1 * 7);
	memset(hash, 7, sizeof(hash));
	hex_encode(hash, sizeof(hash), winner_hex);
	assert_string_field(json_array_get(contributors, 7), "hash", winner_hex);
	json_decref(record);
	audit_log_stop(log);
}

static void test_anonymous_record_without_winner(void **state)
{
	struct fixture *f = *state;
	struct audit_log *log = start_log(f);
	struct audit_entry e;
	uint8_t id[AUDIT_ID_LEN];
	json_t *record = NULL;

	audit_entry_init(&e, "query", NULL);
	memcpy(id, e.id, sizeof(id));
	audit_entry_set_winner(&e, NULL);
	audit_log_submit(log, &e);
	audit_log_stop(log);

	log = start_log(f);
	assert_int_equal(audit_log_get(log, id, &record), AUDIT_OK);
	assert_true(json_is_null(json_object_get(record, "agent_id")));
	assert_true(json_is_null(json_object_get(record, "winner")));
	assert_int_equal(json_object_size(json_object_get(record, "parameters")), 0);
	assert_int_equal(json_array_size(json_object_get(record, "contributors")), 0);
	assert_int_equal(json_integer_value(json_object_get(record, "contributor_count")), 0);
	json_decref(record);
	audit_log_stop(log);
}

static void test_json_record_stays_readable(void **state)
{
	static const char json[] =
	        "{\"query_id\":\"0102030405060708090a0b0c0d0e0f10\",\"time_ms\":1764882000000,"
	        "\"endpoint\":\"query\",\"agent_id\":null,\"parameters\":{\"subject\":\"s\"},"
	        "\"winner\":null,\"contributor_count\":0,\"contributors\":[]}";
	struct fixture *f = *state;
	struct store_batch *batch = store_batch_new();
	struct audit_log *log = start_log(f);
	uint8_t key[1 + AUDIT_ID_LEN];
	json_t *record = NULL;

	key[0] = 'r';
	for (int i = 0; i < AUDIT_ID_LEN; i++)
		key[1 + i] = (uint8_t)(i + 1);
	store_batch_put_audit(batch, key, sizeof(key), json, strlen(json));
	assert_int_equal(store_audit_write(f->store, batch), STORE_OK);

	assert_int_equal(audit_log_get(log, key + 1, &record), AUDIT_OK);
	assert_string_field(record, "query_id", "0102030405060708090a0b0c0d0e0f10");
	assert_string_field(json_object_get(record, "parameters"), "subject", "s");
	json_decref(record);
	store_batch_free(batch);
	audit_log_stop(log);
}

static void test_corrupt_record_is_not_found(void **state)
{
	static const uint8_t truncated[] = {0x01, 0x02, 0x03};
	struct fixture *f = *state;
	struct store_batch *batch = store_batch_new();
	struct audit_log *log = start_log(f);
	uint8_t key[1 + AUDIT_ID_LEN];
	json_t *record = NULL;

	key[0] = 'r';
	memset(key + 1, 0x55, AUDIT_ID_LEN);
	store_batch_put_audit(batch, key, sizeof(key), truncated, sizeof(truncated));
	assert_int_equal(store_audit_write(f->store, batch), STORE_OK);

	assert_int_equal(audit_log_get(log, key + 1, &record), AUDIT_NOT_FOUND);
	assert_null(record);
	store_batch_free(batch);
	audit_log_stop(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_binary_record_round_trip, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_anonymous_record_without_winner, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_json_record_stays_readable, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_record_is_not_found, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
