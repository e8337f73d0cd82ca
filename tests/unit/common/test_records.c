/* Tests of the vote, epoch, co-signature, source and alias records against
 * tests/vectors/records.json, which the Python implementation reproduces. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "stemedb/hex.h"
#include "stemedb/record_json.h"

static json_t *load_vectors(void)
{
	const char *dirs[] = {getenv("STEMEDB_SOURCE_DIR"), ".", "..", "../..", "../../.."};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (dirs[i] == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/tests/vectors/records.json", dirs[i]);
		if (access(path, R_OK) == 0)
			return json_load_file(path, 0, NULL);
	}
	fail_msg("tests/vectors/records.json not found; set STEMEDB_SOURCE_DIR to the "
	         "source tree");
	return NULL;
}

static uint8_t type_of(const char *name)
{
	for (uint8_t t = STEMEDB_RECORD_VOTE; t <= STEMEDB_RECORD_TRUST_OUTCOME; t++) {
		if (strcmp(record_type_name(t), name) == 0)
			return t;
	}
	fail_msg("vector type %s is unknown", name);
	return 0;
}

static void check_hex(const char *name, const char *what, const uint8_t *bytes, size_t len,
                      const char *expected)
{
	char *text = malloc(2 * len + 1);

	hex_encode(bytes, len, text);
	if (strcmp(text, expected) != 0)
		fail_msg("vector %s: %s is %s, expected %s", name, what, text, expected);
	free(text);
}

/* Parses one vector's input, checks canonical bytes, id and signature. */
static void check_case(const json_t *c)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	struct record r;
	struct codec_error err;
	struct buf canonical;
	uint8_t id[STEMEDB_HASH_LEN];
	uint8_t seed[32], pk[32], sk[64];
	size_t bad;

	record_init(&r, type_of(json_string_value(json_object_get(c, "type"))));
	if (!record_from_json(json_object_get(c, "input"), false, &r, &err))
		fail_msg("vector %s: parse failed: %s %s", name, err.field, err.message);
	buf_init(&canonical);
	assert_true(record_encode_canonical(&r, &canonical));
	check_hex(name, "canonical bytes", canonical.data, canonical.len,
	          json_string_value(json_object_get(c, "canonical_hex")));
	assert_true(record_id(&r, id));
	check_hex(name, "id", id, sizeof(id), json_string_value(json_object_get(c, "id")));

	assert_true(hex_decode(json_string_value(json_object_get(c, "seed")), 64, seed, 32));
	crypto_sign_seed_keypair(pk, sk, seed);
	assert_true(record_sign(&r, id, sk));
	check_hex(name, "agent id", r.signers[0].agent_id, 32,
	          json_string_value(json_object_get(c, "agent_id")));
	check_hex(name, "signature", r.signers[0].signature, 64,
	          json_string_value(json_object_get(c, "signature")));
	assert_int_equal(record_verify(&r, id, &bad), RECORD_VALID);

	buf_free(&canonical);
	record_free(&r);
}

static void records_match_vectors(void **state)
{
	json_t *vectors = load_vectors();
	const json_t *cases = json_object_get(vectors, "cases");
	size_t index;
	const json_t *c;

	(void)state;
	assert_true(json_array_size(cases) >= 8);
	json_array_foreach(cases, index, c)
	{
		check_case(c);
	}
	json_decref(vectors);
}

/* Builds the epoch of the vectors with a supersedes id, signed by seed 1. */
static void make_epoch(struct record *r, uint8_t id[STEMEDB_HASH_LEN])
{
	uint8_t seed[32], pk[32], sk[64];

	memset(seed, 1, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	record_init(r, STEMEDB_RECORD_EPOCH);
	record_set_string(&r->u.epoch.name, &r->u.epoch.name_len, "germ theory", 11);
	record_set_string(&r->u.epoch.description, &r->u.epoch.description_len, "", 0);
	r->u.epoch.has_supersedes = true;
	memset(r->u.epoch.supersedes, 0xab, STEMEDB_HASH_LEN);
	r->u.epoch.timestamp = 1700000000;
	assert_true(record_id(r, id));
	assert_true(record_sign(r, id, sk));
}

static void envelope_round_trip(void **state)
{
	struct record r, back;
	struct hlc_stamp hlc = {.wall_ms = 123456789, .logical = 7}, hlc_back;
	uint8_t id[STEMEDB_HASH_LEN], id_back[STEMEDB_HASH_LEN];
	struct buf env;

	(void)state;
	make_epoch(&r, id);
	buf_init(&env);
	assert_true(record_encode_envelope(&r, &hlc, &env));
	record_init(&back, 0);
	assert_true(record_decode_envelope(env.data, env.len, &back, &hlc_back));
	assert_int_equal(back.type, STEMEDB_RECORD_EPOCH);
	assert_true(record_id(&back, id_back));
	assert_memory_equal(id, id_back, sizeof(id));
	assert_int_equal(back.signer_count, 1);
	assert_int_equal(hlc_back.wall_ms, 123456789);
	assert_int_equal(hlc_back.logical, 7);

	/* One extra byte is corruption, not padding. */
	buf_put_u8(&env, 0);
	assert_false(record_decode_envelope(env.data, env.len, &back, &hlc_back));
	buf_free(&env);
	record_free(&back);
	record_free(&r);
}

static void decode_rejects_bad_bytes(void **state)
{
	struct record r, back;
	uint8_t id[STEMEDB_HASH_LEN];
	struct buf canonical;

	(void)state;
	make_epoch(&r, id);
	buf_init(&canonical);
	assert_true(record_encode_canonical(&r, &canonical));
	record_init(&back, 0);
	assert_true(record_decode_canonical(canonical.data, canonical.len, &back));

	canonical.data[1] = 2; /* unknown version */
	assert_false(record_decode_canonical(canonical.data, canonical.len, &back));
	canonical.data[1] = 1;
	canonical.data[0] = 0x01; /* an assertion is not one of these records */
	assert_false(record_decode_canonical(canonical.data, canonical.len, &back));
	canonical.data[0] = STEMEDB_RECORD_EPOCH;
	assert_false(record_decode_canonical(canonical.data, canonical.len - 1, &back));
	buf_free(&canonical);
	record_free(&back);
	record_free(&r);
}

static void verify_rejects_tampering(void **state)
{
	struct record r;
	uint8_t id[STEMEDB_HASH_LEN];
	size_t bad;

	(void)state;
	make_epoch(&r, id);
	r.signers[0].signature[3] ^= 1;
	assert_int_equal(record_verify(&r, id, &bad), RECORD_BAD_SIGNATURE);
	r.signers[0].signature[3] ^= 1;
	r.signers[1] = r.signers[0];
	r.signer_count = 2;
	assert_int_equal(record_verify(&r, id, &bad), RECORD_DUPLICATE);
	assert_int_equal(bad, 1);
	r.signer_count = 0;
	assert_int_equal(record_verify(&r, id, &bad), RECORD_UNSIGNED);
	record_free(&r);
}

static void vote_needs_voter_signature(void **state)
{
	struct record r;
	uint8_t id[STEMEDB_HASH_LEN];
	uint8_t seed[32], pk[32], sk[64];
	size_t bad;

	(void)state;
	memset(seed, 2, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	record_init(&r, STEMEDB_RECORD_VOTE);
	memset(r.u.vote.voter, 9, STEMEDB_AGENT_ID_LEN); /* someone else */
	r.u.vote.weight_micro = 500000;
	assert_true(record_id(&r, id));
	assert_true(record_sign(&r, id, sk));
	assert_int_equal(record_verify(&r, id, &bad), RECORD_WRONG_SIGNER);
}

static void vote_weight_range(void **state)
{
	json_t *body = json_pack("{s:s, s:s, s:f, s:i}", "assertion_hash",
	                         "f5c218ce9f9c541f255a11187c5c2e93690265be5bce78358423e4e7d30408e7",
	                         "voter",
	                         "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
	                         "weight", 1.5, "timestamp", 1);
	struct record r;
	struct codec_error err;

	(void)state;
	record_init(&r, STEMEDB_RECORD_VOTE);
	assert_false(record_from_json(body, false, &r, &err));
	assert_string_equal(err.code, "out_of_range");
	assert_string_equal(err.field, "weight");
	json_object_set_new(body, "weight", json_real(-1.0));
	json_object_set_new(body, "extra", json_true());
	assert_false(record_from_json(body, false, &r, &err));
	assert_string_equal(err.code, "unknown_field");
	json_object_del(body, "extra");
	assert_true(record_from_json(body, false, &r, &err));
	assert_int_equal(r.u.vote.weight_micro, -1000000);
	json_object_set_new(body, "weight", json_real(0.5));
	assert_false(record_from_json(body, true, &r, &err));
	assert_string_equal(err.code, "missing_field");
	json_decref(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(records_match_vectors),
	        cmocka_unit_test(envelope_round_trip),
	        cmocka_unit_test(decode_rejects_bad_bytes),
	        cmocka_unit_test(verify_rejects_tampering),
	        cmocka_unit_test(vote_needs_voter_signature),
	        cmocka_unit_test(vote_weight_range),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
