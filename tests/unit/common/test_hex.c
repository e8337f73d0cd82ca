/* Unit tests for hex encoding, the growable buffer and the bounds-checked reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stemedb/buf.h"
#include "stemedb/hex.h"

static void hex_encode_lowercase(void **state)
{
	(void)state;
	const uint8_t bytes[] = {0x00, 0x01, 0xab, 0xff, 0x7e};
	char text[11];

	hex_encode(bytes, sizeof(bytes), text);
	assert_string_equal(text, "0001abff7e");
}

static void hex_encode_empty(void **state)
{
	(void)state;
	char text[1] = {'x'};

	hex_encode(NULL, 0, text);
	assert_string_equal(text, "");
}

static void hex_decode_either_case(void **state)
{
	(void)state;
	uint8_t bytes[4];

	assert_true(hex_decode("DeadBEEF", 8, bytes, 4));
	assert_memory_equal(bytes, "\xde\xad\xbe\xef", 4);
}

static void hex_decode_rejects_bad_input(void **state)
{
	(void)state;
	uint8_t bytes[2];
	static const char *const bad[] = {"abc", "abcde", "zz00", "00g0", "0 00", "+0ff", "0x00"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bool ok = hex_decode(bad[i], strlen(bad[i]), bytes, 2);
		if (ok)
			fail_msg("hex_decode accepted \"%s\"", bad[i]);
	}
	assert_false(hex_decode(NULL, 0, bytes, 0));
}

static void hex_round_trip_all_bytes(void **state)
{
	(void)state;
	uint8_t bytes[256];
	uint8_t decoded[256];
	char text[513];

	for (int i = 0; i < 256; i++)
		bytes[i] = (uint8_t)i;
	hex_encode(bytes, sizeof(bytes), text);
	assert_int_equal(strlen(text), 512);
	assert_true(hex_decode(text, 512, decoded, sizeof(decoded)));
	assert_memory_equal(bytes, decoded, sizeof(bytes));
}

static void buf_integers_little_endian(void **state)
{
	(void)state;
	struct buf b;

	buf_init(&b);
	buf_put_u8(&b, 0x01);
	buf_put_u16le(&b, 0x0302);
	buf_put_u32le(&b, 0x07060504);
	buf_put_u64le(&b, 0x0f0e0d0c0b0a0908ull);
	buf_put_u64be(&b, 0x1011121314151617ull);
	assert_int_equal(b.len, 23);
	for (size_t i = 0; i < b.len; i++) {
		if (b.data[i] != i + 1)
			fail_msg("byte %zu is 0x%02x, expected 0x%02zx", i, b.data[i], i + 1);
	}

	assert_int_equal(load_u16le(b.data + 1), 0x0302);
	assert_int_equal(load_u32le(b.data + 3), 0x07060504);
	assert_true(load_u64le(b.data + 7) == 0x0f0e0d0c0b0a0908ull);
	assert_true(load_u64be(b.data + 15) == 0x1011121314151617ull);
	buf_free(&b);
	assert_null(b.data);
}

static void buf_grows_and_resets(void **state)
{
	(void)state;
	struct buf b;
	uint8_t chunk[1000];

	memset(chunk, 0x5a, sizeof(chunk));
	buf_init(&b);
	for (int i = 0; i < 100; i++)
		buf_append(&b, chunk, sizeof(chunk));
	assert_int_equal(b.len, 100000);
	assert_true(b.cap >= b.len);
	assert_int_equal(b.data[99999], 0x5a);

	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_non_null(b.data);
	buf_free(&b);
}

static void store_and_load_agree(void **state)
{
	(void)state;
	uint8_t bytes[8];

	store_u32le(bytes, 0xa1b2c3d4u);
	assert_int_equal(load_u32le(bytes), 0xa1b2c3d4u);
	assert_int_equal(bytes[0], 0xd4);
	store_u64le(bytes, 0x0102030405060708ull);
	assert_int_equal(bytes[0], 0x08);
	assert_true(load_u64le(bytes) == 0x0102030405060708ull);
	store_u64be(bytes, 0x0102030405060708ull);
	assert_int_equal(bytes[0], 0x01);
	assert_true(load_u64be(bytes) == 0x0102030405060708ull);
}

static void reader_reads_in_order(void **state)
{
	(void)state;
	const uint8_t data[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0xaa, 0xbb};
	struct reader r;

	reader_init(&r, data, sizeof(data));
	assert_int_equal(reader_u8(&r), 0x01);
	assert_int_equal(reader_u16le(&r), 0x0302);
	assert_int_equal(reader_u32le(&r), 0x07060504);
	const uint8_t *rest = reader_bytes(&r, 2);
	assert_ptr_equal(rest, data + 7);
	assert_int_equal(r.left, 0);
	assert_true(r.ok);
}

static void reader_fails_past_end(void **state)
{
	(void)state;
	const uint8_t data[] = {0x01, 0x02, 0x03};
	struct reader r;

	reader_init(&r, data, sizeof(data));
	assert_int_equal(reader_u32le(&r), 0);
	assert_false(r.ok);
	/* Once failed, even a read that would fit fails, so one check at the end is enough. */
	assert_int_equal(reader_u8(&r), 0);
	assert_null(reader_bytes(&r, 0));
	assert_int_equal(reader_u64le(&r), 0);
	assert_false(r.ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(hex_encode_lowercase),
	        cmocka_unit_test(hex_encode_empty),
	        cmocka_unit_test(hex_decode_either_case),
	        cmocka_unit_test(hex_decode_rejects_bad_input),
	        cmocka_unit_test(hex_round_trip_all_bytes),
	        cmocka_unit_test(buf_integers_little_endian),
	        cmocka_unit_test(buf_grows_and_resets),
	        cmocka_unit_test(store_and_load_agree),
	        cmocka_unit_test(reader_reads_in_order),
	        cmocka_unit_test(reader_fails_past_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
