/* Unit tests for the assertion model: canonical bytes, strict decoding, validation,
 * names, hashing, signatures, the envelope and the fixed vectors in
 * tests/vectors/assertions.json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stemedb/assertion.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"

/* Builds a small valid text assertion without signatures. */
static void make_assertion(struct assertion *a)
{
	assertion_init(a);
	assertion_set_subject(a, "aspirin", 7);
	assertion_set_predicate(a, "treats", 6);
	object_set_text(&a->object, OBJECT_TEXT, "headache", 8);
	a->confidence_micro = 900000;
	a->source_class = SOURCE_CLINICAL;
	a->lifecycle = LIFECYCLE_PROPOSED;
	a->timestamp = 1700000000;
}

static void make_keypair(uint8_t seed_byte, uint8_t public_key[32], uint8_t secret_key[64])
{
	uint8_t seed[STEMEDB_SEED_LEN];

	assert_int_equal(sodium_init() >= 0, 1);
	memset(seed, seed_byte, sizeof(seed));
	crypto_sign_seed_keypair(public_key, secret_key, seed);
}

static void encode(const struct assertion *a, struct buf *out)
{
	buf_init(out);
	assert_true(assertion_encode_canonical(a, out));
}

static void canonical_layout_by_hand(void **state)
{
	(void)state;
	struct assertion a;
	struct buf got;
	struct buf want;

	make_assertion(&a);
	a.has_parent = true;
	memset(a.parent_hash, 0x44, 32);
	memset(a.source_hash, 0x33, 32);
	encode(&a, &got);

	buf_init(&want);
	buf_append(&want,
	           "\x01\x01\x07\x00"
	           "aspirin"
	           "\x06\x00"
	           "treats",
	           19);
	buf_append(&want,
	           "\x01\x08\x00\x00\x00"
	           "headache",
	           13);
	buf_append(&want, "\xa0\xbb\x0d\x00\x01\x00", 6);
	buf_append(&want, a.source_hash, 32);
	buf_put_u8(&want, 0x01);
	buf_append(&want, a.parent_hash, 32);
	buf_put_u64le(&want, 1700000000);

	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.data, want.data, want.len);
	buf_free(&got);
	buf_free(&want);
	assertion_free(&a);
}

static void negative_zero_encodes_as_zero(void **state)
{
	(void)state;
	struct assertion a;
	struct buf negative;
	struct buf positive;

	make_assertion(&a);
	free(a.object.text);
	a.object.text = NULL;
	a.object.text_len = 0;
	a.object.type = OBJECT_NUMBER;
	a.object.number = -0.0;
	encode(&a, &negative);
	a.object.number = 0.0;
	encode(&a, &positive);

	assert_int_equal(negative.len, positive.len);
	assert_memory_equal(negative.data, positive.data, positive.len);
	/* The number follows the 2 + 2 + 7 + 2 + 6 header bytes and the type byte. */
	assert_memory_equal(negative.data + 20, "\0\0\0\0\0\0\0\0", 8);
	buf_free(&negative);
	buf_free(&positive);
	assertion_free(&a);
}

static void confidence_micro_rounding(void **state)
{
	(void)state;
	static const struct {
		double confidence;
		uint32_t micro;
	} cases[] = {
	        {0.0, 0},
	        {1.0, 1000000},
	        {0.9, 900000},
	        {0.8500005, 850001},
	        {0.5000005, 500000},
	        {0.0000005, 1},
	        {0.0000004, 0},
	        {0.9999995, 1000000},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t micro = confidence_to_micro(cases[i].confidence);
		if (micro != cases[i].micro)
			fail_msg("confidence %.17g gave %u millionths, expected %u",
			         cases[i].confidence, micro, cases[i].micro);
	}
}

/* Round-trips one assertion through the canonical bytes and compares re-encodings. */
static void check_round_trip(const struct assertion *a)
{
	struct buf first;
	struct buf second;
	struct assertion decoded;

	encode(a, &first);
	assertion_init(&decoded);
	assert_true(assertion_decode_canonical(first.data, first.len, &decoded));
	encode(&decoded, &second);
	assert_int_equal(first.len, second.len);
	assert_memory_equal(first.data, second.data, first.len);
	assert_int_equal(decoded.signature_count, 0);
	buf_free(&first);
	buf_free(&second);
	assertion_free(&decoded);
}

static void decode_round_trips_every_type(void **state)
{
	(void)state;
	struct assertion a;

	make_assertion(&a);
	check_round_trip(&a);

	object_set_text(&a.object, OBJECT_REFERENCE, "drug:metformin", 14);
	a.has_epoch = true;
	memset(a.epoch, 0x55, 32);
	check_round_trip(&a);

	a.object.type = OBJECT_NUMBER;
	a.object.number = -1.5e300;
	a.has_parent = true;
	memset(a.parent_hash, 0x66, 32);
	check_round_trip(&a);

	a.object.type = OBJECT_BOOLEAN;
	a.object.boolean = true;
	a.source_class = SOURCE_ANECDOTAL;
	a.lifecycle = LIFECYCLE_REJECTED;
	a.confidence_micro = 1000000;
	check_round_trip(&a);
	assertion_free(&a);
}

/* Copies the canonical bytes of a into out; the caller frees out. */
static void canonical_copy(struct buf *out)
{
	struct assertion a;

	make_assertion(&a);
	encode(&a, out);
	assertion_free(&a);
}

static bool decodes(const uint8_t *data, size_t len)
{
	struct assertion a;

	assertion_init(&a);
	bool ok = assertion_decode_canonical(data, len, &a);
	assertion_free(&a);
	return ok;
}

static void decode_rejects_truncation_and_trailing(void **state)
{
	(void)state;
	struct buf b;

	canonical_copy(&b);
	assert_true(decodes(b.data, b.len));
	for (size_t len = 0; len < b.len; len++) {
		if (decodes(b.data, len))
			fail_msg("decoded a record cut to %zu of %zu bytes", len, b.len);
	}

	buf_put_u8(&b, 0);
	assert_false(decodes(b.data, b.len));
	buf_free(&b);
}

/* Offsets in the canonical bytes of make_assertion(). */
#define OFFSET_SUBJECT      4
#define OFFSET_OBJECT_TYPE  19
#define OFFSET_CONFIDENCE   32
#define OFFSET_SOURCE_CLASS 36
#define OFFSET_LIFECYCLE    37
#define OFFSET_FLAGS        70

static void decode_rejects_bad_bytes(void **state)
{
	(void)state;
	static const struct {
		size_t offset;
		uint8_t value;
		const char *what;
	} cases[] = {
	        {0, 0x02, "record type 2"},
	        {1, 0x02, "version 2"},
	        {OFFSET_OBJECT_TYPE, 0, "object type 0"},
	        {OFFSET_OBJECT_TYPE, 5, "object type 5"},
	        {OFFSET_SOURCE_CLASS, 6, "source class 6"},
	        {OFFSET_LIFECYCLE, 5, "lifecycle 5"},
	        {OFFSET_FLAGS, 0x04, "reserved flag bit 2"},
	        {OFFSET_FLAGS, 0x80, "reserved flag bit 7"},
	        {OFFSET_SUBJECT, 0x00, "NUL in the subject"},
	        {OFFSET_SUBJECT, 0xc0, "invalid UTF-8 lead byte in the subject"},
	        {OFFSET_SUBJECT, 0xff, "byte 0xff in the subject"},
	};
	struct buf b;

	canonical_copy(&b);
	assert_int_equal(b.data[OFFSET_OBJECT_TYPE], OBJECT_TEXT);
	assert_int_equal(b.data[OFFSET_FLAGS], 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t saved = b.data[cases[i].offset];

		b.data[cases[i].offset] = cases[i].value;
		if (decodes(b.data, b.len))
			fail_msg("decoded a record with %s", cases[i].what);
		b.data[cases[i].offset] = saved;
	}

	store_u32le(b.data + OFFSET_CONFIDENCE, 1000001);
	assert_false(decodes(b.data, b.len));
	buf_free(&b);
}

/* Encodes a number or boolean assertion, then overwrites the value bytes. */
static void decode_rejects_bad_values(void **state)
{
	(void)state;
	static const uint64_t bad_numbers[] = {
	        0x8000000000000000ull, /* -0.0 */
	        0x7ff8000000000000ull, /* NaN */
	        0x7ff0000000000000ull, /* +infinity */
	        0xfff0000000000000ull, /* -infinity */
	};
	struct assertion a;
	struct buf b;

	make_assertion(&a);
	a.object.type = OBJECT_NUMBER;
	a.object.number = 1.0;
	encode(&a, &b);
	for (size_t i = 0; i < sizeof(bad_numbers) / sizeof(bad_numbers[0]); i++) {
		store_u64le(b.data + OFFSET_OBJECT_TYPE + 1, bad_numbers[i]);
		if (decodes(b.data, b.len))
			fail_msg("decoded number bits 0x%016llx",
			         (unsigned long long)bad_numbers[i]);
	}
	buf_free(&b);

	a.object.type = OBJECT_BOOLEAN;
	encode(&a, &b);
	b.data[OFFSET_OBJECT_TYPE + 1] = 2;
	assert_false(decodes(b.data, b.len));
	buf_free(&b);
	assertion_free(&a);
}

static void decode_rejects_overlong_utf8(void **state)
{
	(void)state;
	struct assertion a;
	struct buf b;

	make_assertion(&a);
	/* "/" written as the overlong two-byte form C0 AF. */
	assertion_set_subject(&a, "a\xc0\xaf", 3);
	encode(&a, &b);
	assert_false(decodes(b.data, b.len));
	buf_free(&b);
	assertion_free(&a);
}

static void utf8_valid_cases(void **state)
{
	(void)state;
	static const struct {
		const char *bytes;
		size_t len;
		bool valid;
	} cases[] = {
	        {"", 0, true},
	        {"plain ascii", 11, true},
	        {"caf\xc3\xa9", 5, true},
	        {"\xe2\x98\x95", 3, true},
	        {"\xf0\x9d\x84\x9e", 4, true},
	        {"\xf4\x8f\xbf\xbf", 4, true},  /* U+10FFFF */
	        {"a\0b", 3, false},             /* NUL */
	        {"\xc0\x80", 2, false},         /* overlong NUL */
	        {"\xc1\xbf", 2, false},         /* overlong */
	        {"\xe0\x80\xaf", 3, false},     /* overlong */
	        {"\xf0\x80\x80\xaf", 4, false}, /* overlong */
	        {"\xed\xa0\x80", 3, false},     /* surrogate U+D800 */
	        {"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
	        {"\xc3", 1, false},             /* truncated */
	        {"\xe2\x98", 2, false},         /* truncated */
	        {"\x80", 1, false},             /* lone continuation */
	        {"\xc3\x28", 2, false},         /* bad continuation */
	        {"\xfe", 1, false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (utf8_valid(cases[i].bytes, cases[i].len) != cases[i].valid)
			fail_msg("utf8_valid case %zu returned %d, expected %d", i, !cases[i].valid,
			         cases[i].valid);
	}
}

/* Asserts that validation fails on field. */
static void expect_invalid(const struct assertion *a, const char *field)
{
	const char *got = NULL;
	char message[256] = "";

	if (assertion_validate(a, &got, message, sizeof(message)))
		fail_msg("assertion_validate accepted an assertion with a bad %s", field);
	assert_string_equal(got, field);
	assert_true(strlen(message) > 10);
}

static void validate_rejects_lengths(void **state)
{
	(void)state;
	struct assertion a;
	char *big = malloc(STEMEDB_TEXT_MAX + 2);

	memset(big, 'x', STEMEDB_TEXT_MAX + 1);
	make_assertion(&a);
	assert_true(assertion_validate(&a, NULL, big, 16));

	assertion_set_subject(&a, big, STEMEDB_SUBJECT_MAX);
	assert_true(assertion_validate(&a, NULL, big + 100, 16));
	assertion_set_subject(&a, big, STEMEDB_SUBJECT_MAX + 1);
	expect_invalid(&a, "subject");
	assertion_set_subject(&a, "", 0);
	expect_invalid(&a, "subject");
	assertion_set_subject(&a, "s", 1);

	assertion_set_predicate(&a, big, STEMEDB_PREDICATE_MAX + 1);
	expect_invalid(&a, "predicate");
	assertion_set_predicate(&a, "", 0);
	expect_invalid(&a, "predicate");
	assertion_set_predicate(&a, "p", 1);

	object_set_text(&a.object, OBJECT_TEXT, big, STEMEDB_TEXT_MAX + 1);
	expect_invalid(&a, "object.value");
	object_set_text(&a.object, OBJECT_REFERENCE, big, STEMEDB_TEXT_MAX);
	assert_true(assertion_validate(&a, NULL, big + 200, 16));
	free(big);
	assertion_free(&a);
}

static void validate_rejects_values(void **state)
{
	(void)state;
	struct assertion a;

	make_assertion(&a);
	assertion_set_subject(&a, "a\0b", 3);
	expect_invalid(&a, "subject");
	assertion_set_subject(&a, "s", 1);

	a.object.type = OBJECT_NUMBER;
	a.object.number = NAN;
	expect_invalid(&a, "object.value");
	a.object.number = INFINITY;
	expect_invalid(&a, "object.value");
	a.object.number = 2.5;

	a.confidence_micro = 1000001;
	expect_invalid(&a, "confidence");
	a.confidence_micro = 1000000;

	a.source_class = 6;
	expect_invalid(&a, "source_class");
	a.source_class = 0;

	a.lifecycle = 5;
	expect_invalid(&a, "lifecycle");
	a.lifecycle = 4;

	a.object.type = (enum object_type)0;
	expect_invalid(&a, "object.type");
	a.object.type = OBJECT_BOOLEAN;

	a.signature_count = STEMEDB_SIGNATURES_MAX + 1;
	expect_invalid(&a, "signatures");
	a.signature_count = 0;
	assert_true(assertion_validate(&a, NULL, NULL, 0));
	assertion_free(&a);
}

static void names_parse_all_spellings(void **state)
{
	(void)state;
	uint8_t value = 99;
	enum object_type type;

	assert_true(source_class_parse("clinical", &value));
	assert_int_equal(value, SOURCE_CLINICAL);
	assert_true(source_class_parse("Regulatory", &value));
	assert_int_equal(value, SOURCE_REGULATORY);
	assert_false(source_class_parse("CLINICAL", &value));
	assert_false(source_class_parse("", &value));
	assert_false(source_class_parse("clinical ", &value));

	assert_true(lifecycle_parse("under_review", &value));
	assert_int_equal(value, LIFECYCLE_UNDER_REVIEW);
	assert_true(lifecycle_parse("UnderReview", &value));
	assert_int_equal(value, LIFECYCLE_UNDER_REVIEW);
	assert_true(lifecycle_parse("Under_review", &value));
	assert_true(lifecycle_parse("Deprecated", &value));
	assert_int_equal(value, LIFECYCLE_DEPRECATED);
	assert_false(lifecycle_parse("underreview", &value));

	assert_true(object_type_parse("Number", &type));
	assert_int_equal(type, OBJECT_NUMBER);
	assert_true(object_type_parse("reference", &type));
	assert_int_equal(type, OBJECT_REFERENCE);
	assert_false(object_type_parse("float", &type));

	for (uint8_t i = 0; i < SOURCE_CLASS_COUNT; i++) {
		assert_true(source_class_parse(source_class_name(i), &value));
		assert_int_equal(value, i);
	}
	for (uint8_t i = 0; i < LIFECYCLE_COUNT; i++) {
		assert_true(lifecycle_parse(lifecycle_name(i), &value));
		assert_int_equal(value, i);
	}
	assert_null(source_class_name(6));
	assert_null(lifecycle_name(5));
	assert_null(object_type_name((enum object_type)5));
	assert_string_equal(lifecycle_name(LIFECYCLE_UNDER_REVIEW), "under_review");
}

static void hash_is_blake2b_of_canonical(void **state)
{
	(void)state;
	struct assertion a;
	struct buf b;
	uint8_t hash[32];
	uint8_t expected[32];

	make_assertion(&a);
	encode(&a, &b);
	assert_true(assertion_hash(&a, hash));
	crypto_generichash(expected, 32, b.data, b.len, NULL, 0);
	assert_memory_equal(hash, expected, 32);

	a.signature_count = 0;
	uint8_t secret_key[64];
	uint8_t public_key[32];
	make_keypair(7, public_key, secret_key);
	assert_true(assertion_sign(&a, hash, secret_key, 5));
	assert_true(assertion_hash(&a, expected));
	assert_memory_equal(hash, expected, 32);
	buf_free(&b);
	assertion_free(&a);
}

static void signing_message_layout(void **state)
{
	(void)state;
	uint8_t hash[32];
	uint8_t message[60];

	memset(hash, 0xab, sizeof(hash));
	assertion_signing_message(hash, 0x0102030405060708ull, message);
	assert_memory_equal(message, "stemedb-assertion-v1", 20);
	assert_memory_equal(message + 20, hash, 32);
	assert_memory_equal(message + 52, "\x08\x07\x06\x05\x04\x03\x02\x01", 8);
}

static void sign_and_verify(void **state)
{
	(void)state;
	struct assertion a;
	uint8_t hash[32];
	uint8_t secret_key[64];
	uint8_t public_key[32];
	size_t bad = 99;

	make_assertion(&a);
	assert_true(assertion_hash(&a, hash));
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_MISSING);

	make_keypair(1, public_key, secret_key);
	assert_true(assertion_sign(&a, hash, secret_key, 1700000001));
	assert_int_equal(a.signature_count, 1);
	assert_memory_equal(a.signatures[0].agent_id, public_key, 32);
	assert_int_equal(a.signatures[0].timestamp, 1700000001);
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_VALID);

	make_keypair(2, public_key, secret_key);
	assert_true(assertion_sign(&a, hash, secret_key, 1700000002));
	assert_int_equal(assertion_verify_signatures(&a, hash, NULL), SIGNATURES_VALID);
	assertion_free(&a);
}

/* Flips one bit of the signature, the hash or the timestamp of the second signature. */
static void verify_detects_flipped_bits(void **state)
{
	(void)state;
	struct assertion a;
	uint8_t hash[32];
	uint8_t secret_key[64];
	uint8_t public_key[32];
	size_t bad = 99;

	make_assertion(&a);
	assert_true(assertion_hash(&a, hash));
	make_keypair(1, public_key, secret_key);
	assert_true(assertion_sign(&a, hash, secret_key, 10));
	make_keypair(2, public_key, secret_key);
	assert_true(assertion_sign(&a, hash, secret_key, 20));

	a.signatures[1].signature[17] ^= 0x04;
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_INVALID);
	assert_int_equal(bad, 1);
	a.signatures[1].signature[17] ^= 0x04;

	a.signatures[1].timestamp ^= 1;
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_INVALID);
	assert_int_equal(bad, 1);
	a.signatures[1].timestamp ^= 1;

	a.signatures[1].agent_id[0] ^= 0x01;
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_INVALID);
	a.signatures[1].agent_id[0] ^= 0x01;

	hash[31] ^= 0x80;
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_INVALID);
	assert_int_equal(bad, 0);
	hash[31] ^= 0x80;
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_VALID);
	assertion_free(&a);
}

static void duplicate_agent_rejected(void **state)
{
	(void)state;
	struct assertion a;
	uint8_t hash[32];
	uint8_t secret_key[64];
	uint8_t public_key[32];
	size_t bad = 99;

	make_assertion(&a);
	assert_true(assertion_hash(&a, hash));
	make_keypair(3, public_key, secret_key);
	assert_true(assertion_sign(&a, hash, secret_key, 10));
	assert_false(assertion_sign(&a, hash, secret_key, 11));
	assert_int_equal(a.signature_count, 1);

	/* A second, valid signature by the same agent still counts as a duplicate. */
	uint8_t message[60];
	assertion_signing_message(hash, 11, message);
	a.signatures[1] = a.signatures[0];
	a.signatures[1].timestamp = 11;
	crypto_sign_detached(a.signatures[1].signature, NULL, message, 60, secret_key);
	a.signature_count = 2;
	assert_int_equal(assertion_verify_signatures(&a, hash, &bad), SIGNATURES_DUPLICATE);
	assert_int_equal(bad, 1);
	assertion_free(&a);
}

static void sign_stops_at_sixteen(void **state)
{
	(void)state;
	struct assertion a;
	uint8_t hash[32];
	uint8_t secret_key[64];
	uint8_t public_key[32];

	make_assertion(&a);
	assert_true(assertion_hash(&a, hash));
	for (uint8_t i = 0; i < STEMEDB_SIGNATURES_MAX; i++) {
		make_keypair((uint8_t)(i + 1), public_key, secret_key);
		assert_true(assertion_sign(&a, hash, secret_key, i));
	}
	make_keypair(100, public_key, secret_key);
	assert_false(assertion_sign(&a, hash, secret_key, 100));
	assert_int_equal(a.signature_count, STEMEDB_SIGNATURES_MAX);
	assert_int_equal(assertion_verify_signatures(&a, hash, NULL), SIGNATURES_VALID);
	assertion_free(&a);
}

static void make_signed(struct assertion *a, size_t signers)
{
	uint8_t hash[32];
	uint8_t secret_key[64];
	uint8_t public_key[32];

	make_assertion(a);
	assert_true(assertion_hash(a, hash));
	for (size_t i = 0; i < signers; i++) {
		make_keypair((uint8_t)(i + 1), public_key, secret_key);
		assert_true(assertion_sign(a, hash, secret_key, 100 + i));
	}
}

static void envelope_round_trip(void **state)
{
	(void)state;
	struct assertion a;
	struct assertion decoded;
	struct hlc_stamp hlc = {.wall_ms = 1700000000123ull, .logical = 7};
	struct hlc_stamp got;
	struct buf b;
	struct buf canonical;

	memset(hlc.node_id, 0x9c, sizeof(hlc.node_id));
	make_signed(&a, 3);
	buf_init(&b);
	assert_true(assertion_encode_envelope(&a, &hlc, &b));
	encode(&a, &canonical);
	assert_int_equal(b.len, 4 + canonical.len + 1 + 3 * 104 + 28);
	assert_int_equal(load_u32le(b.data), canonical.len);

	assertion_init(&decoded);
	assert_true(assertion_decode_envelope(b.data, b.len, &decoded, &got));
	assert_int_equal(decoded.signature_count, 3);
	assert_memory_equal(decoded.signatures, a.signatures, 3 * sizeof(struct signature));
	assert_true(got.wall_ms == hlc.wall_ms);
	assert_int_equal(got.logical, 7);
	assert_memory_equal(got.node_id, hlc.node_id, 16);
	assert_string_equal(decoded.subject, "aspirin");
	buf_free(&canonical);
	buf_free(&b);
	assertion_free(&decoded);
	assertion_free(&a);
}

static bool envelope_decodes(const uint8_t *data, size_t len)
{
	struct assertion a;
	struct hlc_stamp hlc;

	assertion_init(&a);
	bool ok = assertion_decode_envelope(data, len, &a, &hlc);
	assertion_free(&a);
	return ok;
}

static void envelope_rejects_bad_input(void **state)
{
	(void)state;
	struct assertion a;
	struct hlc_stamp hlc = {0};
	struct buf b;

	make_signed(&a, 1);
	buf_init(&b);
	assert_true(assertion_encode_envelope(&a, &hlc, &b));
	assert_true(envelope_decodes(b.data, b.len));
	for (size_t len = 0; len < b.len; len++) {
		if (envelope_decodes(b.data, len))
			fail_msg("decoded an envelope cut to %zu of %zu bytes", len, b.len);
	}

	size_t count_at = 4 + load_u32le(b.data);
	b.data[count_at] = 0;
	assert_false(envelope_decodes(b.data, b.len));
	b.data[count_at] = 17;
	assert_false(envelope_decodes(b.data, b.len));
	b.data[count_at] = 1;

	buf_put_u8(&b, 0);
	assert_false(envelope_decodes(b.data, b.len));
	buf_free(&b);
	assertion_free(&a);
}

/* Finds tests/vectors/assertions.json from STEMEDB_SOURCE_DIR, the current directory
 * or the test binary's directory, walking up to five parents from each. */
static bool find_vectors(char *path, size_t path_size)
{
	char starts[2][PATH_MAX] = {"", ""};
	const char *source_dir = getenv("STEMEDB_SOURCE_DIR");

	if (source_dir != NULL) {
		snprintf(path, path_size, "%s/tests/vectors/assertions.json", source_dir);
		return access(path, R_OK) == 0;
	}
	if (getcwd(starts[0], sizeof(starts[0])) == NULL)
		starts[0][0] = '\0';
	ssize_t n = readlink("/proc/self/exe", starts[1], sizeof(starts[1]) - 1);
	starts[1][n > 0 ? n : 0] = '\0';

	for (int s = 0; s < 2; s++) {
		char dir[PATH_MAX];
		memcpy(dir, starts[s], sizeof(dir));
		for (int up = 0; up < 6 && dir[0] != '\0'; up++) {
			snprintf(path, path_size, "%s/tests/vectors/assertions.json", dir);
			if (access(path, R_OK) == 0)
				return true;
			char *slash = strrchr(dir, '/');
			if (slash == NULL)
				break;
			*slash = '\0';
		}
	}
	return false;
}

static void check_hex(const char *case_name, const char *what, const uint8_t *bytes, size_t len,
                      const char *expected)
{
	char *text = malloc(2 * len + 1);

	hex_encode(bytes, len, text);
	if (strcmp(text, expected) != 0)
		fail_msg("vector %s: %s is %s, expected %s", case_name, what, text, expected);
	free(text);
}

/* Parses the input fields with a placeholder signature, which is then dropped. */
static void parse_vector_input(const char *name, const json_t *input, struct assertion *a)
{
	json_t *copy = json_deep_copy(input);
	struct codec_error err;
	char zeros[129];

	memset(zeros, '0', 128);
	zeros[128] = '\0';
	json_object_set_new(copy, "signatures",
	                    json_pack("[{s:s#, s:s, s:i}]", "agent_id", zeros, 64, "signature",
	                              zeros, "timestamp", 0));
	assertion_init(a);
	if (!assertion_from_json(copy, a, &err))
		fail_msg("vector %s: input rejected at %s: %s", name, err.field, err.message);
	a->signature_count = 0;
	json_decref(copy);
}

static void check_vector_signatures(const char *name, const json_t *signatures, struct assertion *a,
                                    const uint8_t hash[32])
{
	size_t i;
	const json_t *item;

	json_array_foreach(signatures, i, item)
	{
		uint8_t seed[32];
		uint8_t public_key[32];
		uint8_t secret_key[64];
		const char *seed_hex = json_string_value(json_object_get(item, "seed"));

		assert_true(hex_decode(seed_hex, strlen(seed_hex), seed, 32));
		assert_int_equal(crypto_sign_seed_keypair(public_key, secret_key, seed), 0);
		json_int_t timestamp = json_integer_value(json_object_get(item, "timestamp"));
		assert_true(assertion_sign(a, hash, secret_key, (uint64_t)timestamp));
		check_hex(name, "agent_id", a->signatures[i].agent_id, 32,
		          json_string_value(json_object_get(item, "agent_id")));
		check_hex(name, "signature", a->signatures[i].signature, 64,
		          json_string_value(json_object_get(item, "signature")));
	}
	assert_int_equal(assertion_verify_signatures(a, hash, NULL), SIGNATURES_VALID);
}

static void check_vector(const json_t *vector)
{
	const char *name = json_string_value(json_object_get(vector, "name"));
	struct assertion a;
	struct assertion decoded;
	struct buf b;
	uint8_t hash[32];

	assert_non_null(name);
	parse_vector_input(name, json_object_get(vector, "input"), &a);
	encode(&a, &b);
	check_hex(name, "canonical bytes", b.data, b.len,
	          json_string_value(json_object_get(vector, "canonical_hex")));
	assert_true(assertion_hash(&a, hash));
	check_hex(name, "hash", hash, 32, json_string_value(json_object_get(vector, "hash")));

	assertion_init(&decoded);
	if (!assertion_decode_canonical(b.data, b.len, &decoded))
		fail_msg("vector %s: canonical bytes do not decode", name);
	assertion_free(&decoded);

	check_vector_signatures(name, json_object_get(vector, "signatures"), &a, hash);
	buf_free(&b);
	assertion_free(&a);
}

static void fixed_vectors_match(void **state)
{
	(void)state;
	char path[PATH_MAX + 64];
	json_error_t error;

	if (!find_vectors(path, sizeof(path)))
		fail_msg("tests/vectors/assertions.json not found; set STEMEDB_SOURCE_DIR to the "
		         "repository root");
	json_t *root = json_load_file(path, 0, &error);
	if (root == NULL)
		fail_msg("%s:%d: %s", path, error.line, error.text);

	const json_t *cases = json_object_get(root, "cases");
	assert_true(json_array_size(cases) >= 8);
	size_t i;
	const json_t *vector;
	json_array_foreach(cases, i, vector)
	{
		check_vector(vector);
	}
	print_message("checked %zu vectors from %s\n", json_array_size(cases), path);
	json_decref(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(canonical_layout_by_hand),
	        cmocka_unit_test(negative_zero_encodes_as_zero),
	        cmocka_unit_test(confidence_micro_rounding),
	        cmocka_unit_test(decode_round_trips_every_type),
	        cmocka_unit_test(decode_rejects_truncation_and_trailing),
	        cmocka_unit_test(decode_rejects_bad_bytes),
	        cmocka_unit_test(decode_rejects_bad_values),
	        cmocka_unit_test(decode_rejects_overlong_utf8),
	        cmocka_unit_test(utf8_valid_cases),
	        cmocka_unit_test(validate_rejects_lengths),
	        cmocka_unit_test(validate_rejects_values),
	        cmocka_unit_test(names_parse_all_spellings),
	        cmocka_unit_test(hash_is_blake2b_of_canonical),
	        cmocka_unit_test(signing_message_layout),
	        cmocka_unit_test(sign_and_verify),
	        cmocka_unit_test(verify_detects_flipped_bits),
	        cmocka_unit_test(duplicate_agent_rejected),
	        cmocka_unit_test(sign_stops_at_sixteen),
	        cmocka_unit_test(envelope_round_trip),
	        cmocka_unit_test(envelope_rejects_bad_input),
	        cmocka_unit_test(fixed_vectors_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
