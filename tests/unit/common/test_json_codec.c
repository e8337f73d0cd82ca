/* Unit tests for the JSON codec: accepted forms, defaults, output shape and every
 * rejection path with its code and JSON path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/json_codec.h"

static const char AGENT_HEX[] = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";
static const char SIGNATURE_HEX[] =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/* A valid request body; tests change one field at a time. */
static json_t *valid_body(void)
{
	json_t *body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:f, s:I, s:[{s:s, s:s, s:I}]}",
	                         "subject", "aspirin", "predicate", "treats", "object", "type",
	                         "text", "value", "headache", "confidence", 0.9, "timestamp",
	                         (json_int_t)1700000000, "signatures", "agent_id", AGENT_HEX,
	                         "signature", SIGNATURE_HEX, "timestamp", (json_int_t)1700000001);
	assert_non_null(body);
	return body;
}

/* Parses body (taking ownership) and expects success. */
static void parse_ok(json_t *body, struct assertion *a)
{
	struct codec_error err;

	memset(&err, 0, sizeof(err));

	assertion_init(a);
	if (!assertion_from_json(body, a, &err))
		fail_msg("rejected valid body: %s at \"%s\": %s", err.code, err.field, err.message);
	json_decref(body);
}

/* Parses body (taking ownership) and expects a rejection with code and field. */
static void parse_fails(json_t *body, const char *code, const char *field)
{
	struct assertion a;
	struct codec_error err;

	memset(&err, 0, sizeof(err));

	assertion_init(&a);
	if (assertion_from_json(body, &a, &err))
		fail_msg("accepted a body that should fail at %s with %s", field, code);
	if (strcmp(err.code, code) != 0 || strcmp(err.field, field) != 0)
		fail_msg("expected %s at \"%s\", got %s at \"%s\": %s", code, field, err.code,
		         err.field, err.message);
	assert_true(strlen(err.message) > 10);
	assertion_free(&a);
	json_decref(body);
}

static json_t *body_with(const char *key, json_t *value)
{
	json_t *body = valid_body();

	json_object_set_new(body, key, value);
	return body;
}

static json_t *body_without(const char *key)
{
	json_t *body = valid_body();

	json_object_del(body, key);
	return body;
}

static void parse_valid_defaults(void **state)
{
	(void)state;
	struct assertion a;
	static const uint8_t zeros[32];

	parse_ok(valid_body(), &a);
	assert_string_equal(a.subject, "aspirin");
	assert_int_equal(a.subject_len, 7);
	assert_string_equal(a.predicate, "treats");
	assert_int_equal(a.object.type, OBJECT_TEXT);
	assert_string_equal(a.object.text, "headache");
	assert_int_equal(a.confidence_micro, 900000);
	assert_int_equal(a.source_class, SOURCE_ANECDOTAL);
	assert_int_equal(a.lifecycle, LIFECYCLE_PROPOSED);
	assert_memory_equal(a.source_hash, zeros, 32);
	assert_false(a.has_parent);
	assert_false(a.has_epoch);
	assert_true(a.timestamp == 1700000000);
	assert_int_equal(a.signature_count, 1);
	assert_int_equal(a.signatures[0].agent_id[0], 0xd0);
	assert_int_equal(a.signatures[0].signature[1], 0x11);
	assert_true(a.signatures[0].timestamp == 1700000001);
	assertion_free(&a);
}

static void parse_object_forms(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		enum object_type type;
	} cases[] = {
	        {"{\"type\":\"number\",\"value\":1.5}", OBJECT_NUMBER},
	        {"{\"type\":\"Number\",\"value\":2}", OBJECT_NUMBER},
	        {"{\"Number\":1.5}", OBJECT_NUMBER},
	        {"{\"Boolean\":false}", OBJECT_BOOLEAN},
	        {"{\"type\":\"boolean\",\"value\":true}", OBJECT_BOOLEAN},
	        {"{\"Text\":\"x\"}", OBJECT_TEXT},
	        {"{\"Reference\":\"drug:x\"}", OBJECT_REFERENCE},
	        {"{\"type\":\"reference\",\"value\":\"drug:x\"}", OBJECT_REFERENCE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct assertion a;
		json_t *object = json_loads(cases[i].json, 0, NULL);

		assert_non_null(object);
		parse_ok(body_with("object", object), &a);
		if (a.object.type != cases[i].type)
			fail_msg("%s parsed as type %d", cases[i].json, a.object.type);
		assertion_free(&a);
	}
}

static void parse_object_values(void **state)
{
	(void)state;
	struct assertion a;

	parse_ok(body_with("object", json_pack("{s:f}", "Number", 1.5)), &a);
	assert_true(a.object.number == 1.5);
	assertion_free(&a);

	parse_ok(body_with("object",
	                   json_pack("{s:s, s:I}", "type", "number", "value", (json_int_t)-42)),
	         &a);
	assert_true(a.object.number == -42.0);
	assertion_free(&a);

	parse_ok(body_with("object", json_pack("{s:b}", "Boolean", 0)), &a);
	assert_false(a.object.boolean);
	assertion_free(&a);

	parse_ok(body_with("object", json_pack("{s:s, s:b}", "type", "boolean", "value", 1)), &a);
	assert_true(a.object.boolean);
	assertion_free(&a);
}

static void parse_optional_fields(void **state)
{
	(void)state;
	struct assertion a;
	json_t *body = valid_body();
	char hash_hex[65];

	memset(hash_hex, 'A', 64);
	hash_hex[64] = '\0';
	json_object_set_new(body, "source_class", json_string("Clinical"));
	json_object_set_new(body, "lifecycle", json_string("UnderReview"));
	json_object_set_new(body, "source_hash", json_string(hash_hex));
	json_object_set_new(body, "parent_hash", json_string(hash_hex));
	json_object_set_new(body, "epoch", json_null());
	json_object_set_new(body, "hash", json_string("echoed by the client"));
	parse_ok(body, &a);
	assert_int_equal(a.source_class, SOURCE_CLINICAL);
	assert_int_equal(a.lifecycle, LIFECYCLE_UNDER_REVIEW);
	assert_int_equal(a.source_hash[31], 0xaa);
	assert_true(a.has_parent);
	assert_int_equal(a.parent_hash[0], 0xaa);
	assert_false(a.has_epoch);
	assertion_free(&a);
}

static void reject_missing_fields(void **state)
{
	(void)state;
	static const char *const required[] = {"subject",    "predicate", "object",
	                                       "confidence", "timestamp", "signatures"};

	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		parse_fails(body_without(required[i]), "missing_field", required[i]);
	parse_fails(json_array(), "invalid_field", "");
}

static void reject_wrong_types(void **state)
{
	(void)state;
	parse_fails(body_with("subject", json_integer(5)), "invalid_field", "subject");
	parse_fails(body_with("predicate", json_null()), "invalid_field", "predicate");
	parse_fails(body_with("object", json_string("x")), "invalid_field", "object");
	parse_fails(body_with("confidence", json_string("0.5")), "invalid_field", "confidence");
	parse_fails(body_with("confidence", json_true()), "invalid_field", "confidence");
	parse_fails(body_with("timestamp", json_string("1700000000")), "invalid_field",
	            "timestamp");
	parse_fails(body_with("timestamp", json_real(1.5)), "invalid_field", "timestamp");
	parse_fails(body_with("source_class", json_integer(1)), "invalid_field", "source_class");
	parse_fails(body_with("lifecycle", json_true()), "invalid_field", "lifecycle");
	parse_fails(body_with("source_hash", json_integer(0)), "invalid_field", "source_hash");
	parse_fails(body_with("signatures", json_object()), "invalid_field", "signatures");
}

static void reject_bad_objects(void **state)
{
	(void)state;
	parse_fails(body_with("object", json_pack("{s:s, s:s}", "type", "number", "value", "1.5")),
	            "invalid_field", "object.value");
	parse_fails(body_with("object", json_pack("{s:s}", "Number", "1.5")), "invalid_field",
	            "object.Number");
	parse_fails(body_with("object", json_pack("{s:i}", "Boolean", 0)), "invalid_field",
	            "object.Boolean");
	parse_fails(body_with("object", json_pack("{s:s, s:i}", "type", "text", "value", 3)),
	            "invalid_field", "object.value");
	parse_fails(body_with("object", json_pack("{s:s, s:s}", "type", "float", "value", "x")),
	            "invalid_field", "object.type");
	parse_fails(body_with("object", json_pack("{s:i, s:s}", "type", 1, "value", "x")),
	            "invalid_field", "object.type");
	parse_fails(body_with("object", json_pack("{s:s}", "type", "text")), "missing_field",
	            "object.value");
	parse_fails(body_with("object", json_pack("{s:s, s:s, s:s}", "type", "text", "value", "x",
	                                          "unit", "mg")),
	            "unknown_field", "object.unit");
	parse_fails(body_with("object", json_pack("{s:f}", "Float", 1.0)), "invalid_field",
	            "object.Float");
	parse_fails(body_with("object", json_pack("{s:f, s:b}", "Number", 1.0, "Boolean", 1)),
	            "invalid_field", "object");
	parse_fails(body_with("object", json_object()), "invalid_field", "object");
}

static void reject_out_of_range(void **state)
{
	(void)state;
	char *big = malloc(STEMEDB_TEXT_MAX + 2);

	memset(big, 'x', STEMEDB_TEXT_MAX + 1);
	big[STEMEDB_TEXT_MAX + 1] = '\0';
	parse_fails(body_with("subject", json_stringn(big, STEMEDB_SUBJECT_MAX + 1)),
	            "out_of_range", "subject");
	parse_fails(body_with("subject", json_string("")), "out_of_range", "subject");
	parse_fails(body_with("predicate", json_stringn(big, STEMEDB_PREDICATE_MAX + 1)),
	            "out_of_range", "predicate");
	parse_fails(body_with("object", json_pack("{s:s}", "Text", big)), "out_of_range",
	            "object.Text");
	parse_fails(body_with("confidence", json_real(-0.1)), "out_of_range", "confidence");
	parse_fails(body_with("confidence", json_real(1.0000001)), "out_of_range", "confidence");
	parse_fails(body_with("confidence", json_integer(2)), "out_of_range", "confidence");
	parse_fails(body_with("timestamp", json_integer(-1)), "out_of_range", "timestamp");
	parse_fails(body_with("timestamp", json_integer(9007199254740993LL)), "out_of_range",
	            "timestamp");
	free(big);

	struct assertion a;
	parse_ok(body_with("subject", json_stringn("ssssssss", 8)), &a);
	assertion_free(&a);
	parse_ok(body_with("timestamp", json_integer(9007199254740992LL)), &a);
	assertion_free(&a);
}

static void confidence_message_names_value(void **state)
{
	(void)state;
	struct assertion a;
	struct codec_error err;
	json_t *body = body_with("confidence", json_real(1.5));

	assertion_init(&a);
	assert_false(assertion_from_json(body, &a, &err));
	assert_string_equal(err.message,
	                    "confidence 1.5 is out of range; use a number from 0.0 to 1.0");
	json_decref(body);

	body = body_with("confidence", json_real(1.0000001));
	assert_false(assertion_from_json(body, &a, &err));
	if (strstr(err.message, "1.0000001") == NULL)
		fail_msg("message does not name 1.0000001: %s", err.message);
	json_decref(body);
	assertion_free(&a);
}

static void reject_bad_names_and_unknown_fields(void **state)
{
	(void)state;
	parse_fails(body_with("source_class", json_string("peer_reviewed")), "invalid_field",
	            "source_class");
	parse_fails(body_with("lifecycle", json_string("draft")), "invalid_field", "lifecycle");
	parse_fails(body_with("confidense", json_real(0.5)), "unknown_field", "confidense");
	parse_fails(body_with("parent", json_null()), "unknown_field", "parent");
}

static void reject_bad_hex(void **state)
{
	(void)state;
	parse_fails(body_with("source_hash", json_string("abc")), "invalid_field", "source_hash");
	parse_fails(body_with("parent_hash", json_string("zz000000000000000000000000000000000000000"
	                                                 "00000000000000000000000")),
	            "invalid_field", "parent_hash");
	parse_fails(body_with("epoch", json_string("")), "invalid_field", "epoch");
}

/* Parses a body whose signatures array is replaced by the given JSON text. */
static json_t *body_with_signatures(const char *signatures_json)
{
	json_error_t error;
	json_t *signatures = json_loads(signatures_json, 0, &error);

	if (signatures == NULL)
		fail_msg("bad test JSON %s: %s", signatures_json, error.text);
	return body_with("signatures", signatures);
}

static void reject_bad_signatures(void **state)
{
	(void)state;
	char text[1024];

	parse_fails(body_with_signatures("[]"), "out_of_range", "signatures");
	parse_fails(body_with_signatures("[5]"), "invalid_field", "signatures[0]");

	snprintf(text, sizeof(text),
	         "[{\"agent_id\":\"%s\",\"signature\":\"%s\",\"timestamp\":1},"
	         "{\"agent_id\":\"%.63s\",\"signature\":\"%s\",\"timestamp\":1}]",
	         AGENT_HEX, SIGNATURE_HEX, AGENT_HEX, SIGNATURE_HEX);
	parse_fails(body_with_signatures(text), "invalid_field", "signatures[1].agent_id");

	snprintf(text, sizeof(text),
	         "[{\"agent_id\":\"%s\",\"signature\":\"%.126sgg\","
	         "\"timestamp\":1}]",
	         AGENT_HEX, SIGNATURE_HEX);
	parse_fails(body_with_signatures(text), "invalid_field", "signatures[0].signature");

	snprintf(text, sizeof(text), "[{\"agent_id\":\"%s\",\"signature\":\"%s\"}]", AGENT_HEX,
	         SIGNATURE_HEX);
	parse_fails(body_with_signatures(text), "missing_field", "signatures[0].timestamp");

	snprintf(text, sizeof(text), "[{\"signature\":\"%s\",\"timestamp\":1}]", SIGNATURE_HEX);
	parse_fails(body_with_signatures(text), "missing_field", "signatures[0].agent_id");

	snprintf(text, sizeof(text), "[{\"agent_id\":\"%s\",\"timestamp\":1}]", AGENT_HEX);
	parse_fails(body_with_signatures(text), "missing_field", "signatures[0].signature");

	snprintf(text, sizeof(text),
	         "[{\"agent_id\":\"%s\",\"signature\":\"%s\",\"timestamp\":-5}]", AGENT_HEX,
	         SIGNATURE_HEX);
	parse_fails(body_with_signatures(text), "out_of_range", "signatures[0].timestamp");

	snprintf(text, sizeof(text),
	         "[{\"agent_id\":\"%s\",\"signature\":\"%s\",\"timestamp\":1,"
	         "\"key\":1}]",
	         AGENT_HEX, SIGNATURE_HEX);
	parse_fails(body_with_signatures(text), "unknown_field", "signatures[0].key");
}

static void reject_seventeen_signatures(void **state)
{
	(void)state;
	json_t *body = valid_body();
	json_t *list = json_object_get(body, "signatures");
	json_t *first = json_array_get(list, 0);

	for (int i = 1; i < STEMEDB_SIGNATURES_MAX; i++)
		json_array_append_new(list, json_deep_copy(first));

	struct assertion a;
	json_incref(body);
	parse_ok(body, &a);
	assert_int_equal(a.signature_count, STEMEDB_SIGNATURES_MAX);
	assertion_free(&a);

	json_array_append_new(list, json_deep_copy(first));
	parse_fails(body, "out_of_range", "signatures");
}

/* jansson rejects "\u0000" when loading, and a string built with a NUL inside is
 * rejected by the field rules. */
static void reject_nul_and_invalid_utf8(void **state)
{
	(void)state;
	json_error_t error;

	assert_null(json_loads("{\"subject\":\"a\\u0000b\"}", 0, &error));
	parse_fails(body_with("subject", json_stringn("a\0b", 3)), "invalid_field", "subject");
	parse_fails(body_with("object", json_pack("{s:s, s:o}", "type", "text", "value",
	                                          json_stringn("x\0", 2))),
	            "invalid_field", "object.value");

	/* jansson also refuses invalid UTF-8 in json_string, so this checks that path. */
	assert_null(json_string("\xc0\xaf"));
	assert_null(json_loads("{\"subject\":\"\xc0\xaf\"}", 0, &error));
}

static void output_shape(void **state)
{
	(void)state;
	struct assertion a;
	uint8_t hash[32];
	json_t *body = valid_body();

	json_object_set_new(body, "epoch", json_string(AGENT_HEX));
	json_object_set_new(body, "source_class", json_string("Expert"));
	json_object_set_new(body, "confidence", json_real(0.8500005));
	parse_ok(body, &a);
	memset(hash, 0x5e, sizeof(hash));

	json_t *out = assertion_to_json(&a, hash);
	assert_non_null(out);
	assert_string_equal(json_string_value(json_object_get(out, "hash")),
	                    "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e");
	assert_string_equal(json_string_value(json_object_get(out, "subject")), "aspirin");
	assert_string_equal(json_string_value(json_object_get(out, "source_class")), "expert");
	assert_string_equal(json_string_value(json_object_get(out, "lifecycle")), "proposed");
	assert_true(json_real_value(json_object_get(out, "confidence")) == 0.850001);
	assert_null(json_object_get(out, "parent_hash"));
	assert_string_equal(json_string_value(json_object_get(out, "epoch")), AGENT_HEX);
	assert_true(json_integer_value(json_object_get(out, "timestamp")) == 1700000000);

	json_t *object = json_object_get(out, "object");
	assert_string_equal(json_string_value(json_object_get(object, "type")), "text");
	assert_string_equal(json_string_value(json_object_get(object, "value")), "headache");

	json_t *signature = json_array_get(json_object_get(out, "signatures"), 0);
	assert_string_equal(json_string_value(json_object_get(signature, "agent_id")), AGENT_HEX);
	assert_string_equal(json_string_value(json_object_get(signature, "signature")),
	                    SIGNATURE_HEX);
	assert_true(json_integer_value(json_object_get(signature, "timestamp")) == 1700000001);
	assert_int_equal(json_object_size(out), 11);
	json_decref(out);
	assertion_free(&a);
}

/* Output parsed back gives the same canonical bytes. */
static void output_round_trips(void **state)
{
	(void)state;
	struct assertion a;
	struct assertion again;
	uint8_t hash[32] = {0};
	static const char *const objects[] = {"{\"Number\":-0.0}", "{\"Number\":96.7}",
	                                      "{\"Boolean\":true}",
	                                      "{\"Reference\":\"caf\\u00e9\"}", "{\"Text\":\"\"}"};

	for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++) {
		json_t *body = body_with("object", json_loads(objects[i], 0, NULL));
		json_object_set_new(body, "parent_hash", json_string(AGENT_HEX));
		parse_ok(body, &a);

		json_t *out = assertion_to_json(&a, hash);
		char *text = json_dumps(out, 0);
		json_t *reparsed = json_loads(text, 0, NULL);
		parse_ok(reparsed, &again);

		struct buf first;
		struct buf second;
		buf_init(&first);
		buf_init(&second);
		assert_true(assertion_encode_canonical(&a, &first));
		assert_true(assertion_encode_canonical(&again, &second));
		if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0)
			fail_msg("%s changed after a JSON round trip: %s", objects[i], text);
		buf_free(&first);
		buf_free(&second);
		free(text);
		json_decref(out);
		assertion_free(&a);
		assertion_free(&again);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(parse_valid_defaults),
	        cmocka_unit_test(parse_object_forms),
	        cmocka_unit_test(parse_object_values),
	        cmocka_unit_test(parse_optional_fields),
	        cmocka_unit_test(reject_missing_fields),
	        cmocka_unit_test(reject_wrong_types),
	        cmocka_unit_test(reject_bad_objects),
	        cmocka_unit_test(reject_out_of_range),
	        cmocka_unit_test(confidence_message_names_value),
	        cmocka_unit_test(reject_bad_names_and_unknown_fields),
	        cmocka_unit_test(reject_bad_hex),
	        cmocka_unit_test(reject_bad_signatures),
	        cmocka_unit_test(reject_seventeen_signatures),
	        cmocka_unit_test(reject_nul_and_invalid_utf8),
	        cmocka_unit_test(output_shape),
	        cmocka_unit_test(output_round_trips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
