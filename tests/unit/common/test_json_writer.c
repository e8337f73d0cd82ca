/* Unit tests for the streaming JSON writer: string escaping, numbers, nesting and the
 * shortest round-trip formatting of doubles. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stemedb/json_writer.h"

/* Writes one string value with a fresh writer and returns the text (static storage). */
static const char *written_string(const char *text, size_t len)
{
	static char result[256];
	struct json_writer w;
	struct buf out;

	buf_init(&out);
	json_writer_init(&w, &out);
	json_writer_string(&w, text, len);
	snprintf(result, sizeof(result), "%.*s", (int)out.len, (const char *)out.data);
	buf_free(&out);
	return result;
}

static void writer_escapes_control_bytes(void **state)
{
	(void)state;
	static const char *const short_forms[32] = {['\b'] = "\"\\b\"",
	                                            ['\f'] = "\"\\f\"",
	                                            ['\n'] = "\"\\n\"",
	                                            ['\r'] = "\"\\r\"",
	                                            ['\t'] = "\"\\t\""};

	for (int c = 0; c < 0x20; c++) {
		char byte = (char)c;
		char expected[16];

		if (short_forms[c] != NULL)
			snprintf(expected, sizeof(expected), "%s", short_forms[c]);
		else
			snprintf(expected, sizeof(expected), "\"\\u%04x\"", c);
		assert_string_equal(written_string(&byte, 1), expected);
	}
}

static void writer_escapes_quote_and_backslash(void **state)
{
	(void)state;

	assert_string_equal(written_string("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
	assert_string_equal(written_string("/\x7f", 2), "\"/\x7f\"");
	assert_string_equal(written_string("", 0), "\"\"");
}

static void writer_keeps_valid_utf8(void **state)
{
	(void)state;
	const char text[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";

	assert_string_equal(written_string(text, sizeof(text) - 1),
	                    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

static void writer_replaces_invalid_utf8(void **state)
{
	(void)state;
	static const struct {
		const char *bytes;
		size_t len;
		const char *expected;
	} cases[] = {
	        {"\x80", 1, "\"\\ufffd\""},                       /* lone continuation byte */
	        {"\xc0\x80", 2, "\"\\ufffd\\ufffd\""},            /* overlong NUL */
	        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""}, /* UTF-16 surrogate */
	        {"a\xe2\x82", 3, "\"a\\ufffd\\ufffd\""},          /* cut-off sequence */
	        {"\xf5\x80\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* above U+10FFFF */
	        {"\xf4\x8f\xbf\xbf", 4, "\"\xf4\x8f\xbf\xbf\""},             /* U+10FFFF */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(written_string(cases[i].bytes, cases[i].len),
		                    cases[i].expected);
}

static void writer_nests_and_separates(void **state)
{
	(void)state;
	struct json_writer w;
	struct buf out;

	buf_init(&out);
	json_writer_init(&w, &out);
	json_writer_object_begin(&w);
	json_writer_key(&w, "a");
	json_writer_array_begin(&w);
	json_writer_int(&w, 1);
	json_writer_uint(&w, 2);
	json_writer_object_begin(&w);
	json_writer_object_end(&w);
	json_writer_array_end(&w);
	json_writer_key(&w, "b\"");
	json_writer_object_begin(&w);
	json_writer_key(&w, "c");
	json_writer_null(&w);
	json_writer_key(&w, "d");
	json_writer_bool(&w, false);
	json_writer_object_end(&w);
	json_writer_key(&w, "e");
	json_writer_array_begin(&w);
	json_writer_array_end(&w);
	json_writer_key(&w, "h");
	json_writer_hex(&w, (const uint8_t *)"\x00\xab", 2);
	json_writer_object_end(&w);

	buf_put_u8(&out, 0);
	assert_string_equal((const char *)out.data,
	                    "{\"a\":[1,2,{}],\"b\\\"\":{\"c\":null,\"d\":false},\"e\":[],"
	                    "\"h\":\"00ab\"}");
	assert_int_equal(w.depth, 0);
	buf_free(&out);
}

static void writer_repeats_earlier_value(void **state)
{
	(void)state;
	struct json_writer w;
	struct buf out;
	size_t start, end;

	buf_init(&out);
	json_writer_init(&w, &out);
	json_writer_object_begin(&w);
	json_writer_key(&w, "first");
	start = out.len;
	json_writer_array_begin(&w);
	json_writer_cstring(&w, "x");
	json_writer_array_end(&w);
	end = out.len;
	json_writer_key(&w, "again");
	json_writer_array_begin(&w);
	json_writer_int(&w, 1);
	json_writer_repeat(&w, start, end);
	json_writer_array_end(&w);
	json_writer_object_end(&w);

	buf_put_u8(&out, 0);
	assert_string_equal((const char *)out.data, "{\"first\":[\"x\"],\"again\":[1,[\"x\"]]}");
	buf_free(&out);
}

static void writer_integers_at_limits(void **state)
{
	(void)state;
	struct json_writer w;
	struct buf out;

	buf_init(&out);
	json_writer_init(&w, &out);
	json_writer_array_begin(&w);
	json_writer_int(&w, INT64_MIN);
	json_writer_int(&w, INT64_MAX);
	json_writer_int(&w, 0);
	json_writer_int(&w, -7);
	json_writer_uint(&w, UINT64_MAX);
	json_writer_array_end(&w);

	buf_put_u8(&out, 0);
	assert_string_equal((const char *)out.data,
	                    "[-9223372036854775808,9223372036854775807,0,-7,"
	                    "18446744073709551615]");
	buf_free(&out);
}

static void writer_micro_is_exact(void **state)
{
	(void)state;
	static const struct {
		uint64_t millionths;
		const char *expected;
	} cases[] = {{0, "0.0"},           {1000000, "1.0"}, {441874, "0.441874"},
	             {50, "0.00005"},      {1, "0.000001"},  {1500000, "1.5"},
	             {999999, "0.999999"}, {100000, "0.1"},  {12000001, "12.000001"}};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_writer w;
		struct buf out;

		buf_init(&out);
		json_writer_init(&w, &out);
		json_writer_micro(&w, cases[i].millionths);
		buf_put_u8(&out, 0);
		assert_string_equal((const char *)out.data, cases[i].expected);
		buf_free(&out);
	}
}

static void writer_non_finite_is_null(void **state)
{
	(void)state;
	struct json_writer w;
	struct buf out;

	buf_init(&out);
	json_writer_init(&w, &out);
	json_writer_array_begin(&w);
	json_writer_double(&w, NAN);
	json_writer_double(&w, INFINITY);
	json_writer_double(&w, -INFINITY);
	json_writer_array_end(&w);
	buf_put_u8(&out, 0);
	assert_string_equal((const char *)out.data, "[null,null,null]");
	buf_free(&out);
}

static void format_double_known_values(void **state)
{
	(void)state;
	static const struct {
		double value;
		const char *expected;
	} cases[] = {
	        {0.9, "0.9"},
	        {1.0, "1.0"},
	        {0.0, "0.0"},
	        {-0.0, "-0.0"},
	        {-2.5, "-2.5"},
	        {0.1 + 0.2, "0.30000000000000004"},
	        {1e-5, "1e-5"},
	        {0.0001, "0.0001"},
	        {1e20, "1e20"},
	        {1e15, "1e15"},
	        {123456.0, "123456.0"},
	        {0.441874, "0.441874"},
	        {0.296131057103935, "0.296131057103935"},
	        {1.0 / 3.0, "0.3333333333333333"},
	        {2.0 / 3.0, "0.6666666666666666"},
	        {DBL_MAX, "1.7976931348623157e308"},
	        {2251799813685248.5, "2251799813685248.5"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[JSON_DOUBLE_TEXT_MAX];
		size_t len = json_format_double(cases[i].value, text);

		assert_string_equal(text, cases[i].expected);
		assert_int_equal(len, strlen(cases[i].expected));
	}
}

/* The reference: printf's correctly rounded %.15g, %.16g or %.17g, whichever is the
 * first to read back exactly, rewritten with jansson's exponent and ".0" rules. */
static void reference_format(double value, char out[96])
{
	char text[64];
	char *e;

	for (int precision = 15; precision <= 17; precision++) {
		snprintf(text, sizeof(text), "%.*g", precision, value);
		if (strtod(text, NULL) == value)
			break;
	}
	e = strchr(text, 'e');
	if (e == NULL) {
		snprintf(out, 96, "%s%s", text, strchr(text, '.') != NULL ? "" : ".0");
		return;
	}
	*e = '\0';
	snprintf(out, 96, "%se%d", text, atoi(e + 1));
}

static void check_against_reference(double value)
{
	char got[JSON_DOUBLE_TEXT_MAX];
	char expected[96];

	json_format_double(value, got);
	reference_format(value, expected);
	if (strcmp(got, expected) != 0 || strtod(got, NULL) != value)
		fail_msg("%.17g was written as \"%s\", expected \"%s\"", value, got, expected);
}

static void format_double_matches_printf(void **state)
{
	(void)state;
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	for (int i = 0; i < 200000; i++) {
		uint64_t bits;
		double value;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		bits = seed;
		memcpy(&value, &bits, sizeof(value));
		if (isfinite(value))
			check_against_reference(value);

		/* Values like decayed confidences and lens scores, in 0..1 and around it. */
		check_against_reference((double)(seed >> 11) / 9007199254740992.0);
		check_against_reference((double)(seed >> 11) / 9007199254740992.0 *
		                        pow(10.0, (double)(i % 24) - 8.0));
		check_against_reference((double)(seed % 1000000) / 1e6);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(writer_escapes_control_bytes),
	        cmocka_unit_test(writer_escapes_quote_and_backslash),
	        cmocka_unit_test(writer_keeps_valid_utf8),
	        cmocka_unit_test(writer_replaces_invalid_utf8),
	        cmocka_unit_test(writer_nests_and_separates),
	        cmocka_unit_test(writer_repeats_earlier_value),
	        cmocka_unit_test(writer_integers_at_limits),
	        cmocka_unit_test(writer_micro_is_exact),
	        cmocka_unit_test(writer_non_finite_is_null),
	        cmocka_unit_test(format_double_known_values),
	        cmocka_unit_test(format_double_matches_printf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
