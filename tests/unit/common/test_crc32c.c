/* Unit tests for CRC-32C: known vectors and agreement between the SSE4.2 and table paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stemedb/crc32c.h"

/* Defined in common/src/crc32c.c but kept out of the public header. */
uint32_t crc32c_software(uint32_t crc, const void *data, size_t len);
uint32_t crc32c_hardware(uint32_t crc, const void *data, size_t len);
int crc32c_hardware_available(void);

static void crc32c_check_value(void **state)
{
	(void)state;
	uint32_t crc = crc32c(0, "123456789", 9);

	if (crc != 0xE3069283u)
		fail_msg("crc32c(\"123456789\") = 0x%08x, expected 0xE3069283", crc);
	assert_int_equal(crc32c_software(0, "123456789", 9), 0xE3069283u);
}

/* Vectors from RFC 3720, appendix B.4 (iSCSI). */
static void crc32c_rfc3720_vectors(void **state)
{
	(void)state;
	uint8_t data[32];

	memset(data, 0, sizeof(data));
	assert_int_equal(crc32c(0, data, 32), 0x8A9136AAu);
	memset(data, 0xff, sizeof(data));
	assert_int_equal(crc32c(0, data, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		data[i] = (uint8_t)i;
	assert_int_equal(crc32c(0, data, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		data[i] = (uint8_t)(31 - i);
	assert_int_equal(crc32c(0, data, 32), 0x113FDB5Cu);
}

static void crc32c_empty_is_identity(void **state)
{
	(void)state;
	assert_int_equal(crc32c(0, "", 0), 0);
	assert_int_equal(crc32c(0x12345678u, "", 0), 0x12345678u);
}

static void crc32c_continues_across_calls(void **state)
{
	(void)state;
	const char *text = "The quick brown fox jumps over the lazy dog";
	size_t len = strlen(text);
	uint32_t whole = crc32c(0, text, len);

	for (size_t split = 0; split <= len; split++) {
		uint32_t part = crc32c(crc32c(0, text, split), text + split, len - split);
		if (part != whole)
			fail_msg("split at %zu gave 0x%08x, whole gave 0x%08x", split, part, whole);
	}
}

/* Every length and start alignment up to 64, then a 1 MiB buffer, on both paths. */
static void crc32c_paths_agree(void **state)
{
	(void)state;
	size_t size = 1u << 20;
	uint8_t *data = malloc(size + 8);
	uint32_t seed = 12345;

	assert_non_null(data);
	for (size_t i = 0; i < size + 8; i++) {
		seed = seed * 1103515245u + 12345u;
		data[i] = (uint8_t)(seed >> 16);
	}

	for (size_t offset = 0; offset < 8; offset++) {
		for (size_t len = 0; len <= 64; len++) {
			uint32_t soft = crc32c_software(0, data + offset, len);
			uint32_t hard = crc32c_hardware(0, data + offset, len);
			if (soft != hard)
				fail_msg("offset %zu length %zu: software 0x%08x, hardware 0x%08x",
				         offset, len, soft, hard);
		}
	}

	uint32_t soft = crc32c_software(0, data + 3, size);
	uint32_t hard = crc32c_hardware(0, data + 3, size);
	if (soft != hard)
		fail_msg("1 MiB buffer: software 0x%08x, hardware 0x%08x", soft, hard);
	print_message("SSE4.2 path %s\n", crc32c_hardware_available() ? "used" : "not available");
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(crc32c_check_value),
	        cmocka_unit_test(crc32c_rfc3720_vectors),
	        cmocka_unit_test(crc32c_empty_is_identity),
	        cmocka_unit_test(crc32c_continues_across_calls),
	        cmocka_unit_test(crc32c_paths_agree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
