#include "stemedb/crc32c.h"

#include <pthread.h>
#include <string.h>

/* Reflected Castagnoli polynomial. */
#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static int crc32c_have_sse42;

/* Builds the slicing-by-8 tables: table[k][b] is the CRC of byte b followed by k zero
 * bytes, so eight input bytes fold into the register with eight lookups. */
static void crc32c_build_tables(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t crc = b;
		for (int bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (CRC32C_POLY & (0u - (crc & 1)));
		crc32c_table[0][b] = crc;
	}

	for (uint32_t b = 0; b < 256; b++) {
		for (int k = 1; k < 8; k++) {
			uint32_t prev = crc32c_table[k - 1][b];
			crc32c_table[k][b] = (prev >> 8) ^ crc32c_table[0][prev & 0xff];
		}
	}
}

static void crc32c_setup(void)
{
	crc32c_build_tables();
	__builtin_cpu_init();
	crc32c_have_sse42 = __builtin_cpu_supports("sse4.2");
}

/* Software path. crc is the raw register (already inverted). */
static uint32_t crc32c_software_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint32_t low;
		uint32_t high;

		low = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		      (uint32_t)p[3] << 24;
		high = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
		       (uint32_t)p[7] << 24;
		low ^= crc;
		crc = crc32c_table[7][low & 0xff] ^ crc32c_table[6][(low >> 8) & 0xff] ^
		      crc32c_table[5][(low >> 16) & 0xff] ^ crc32c_table[4][low >> 24] ^
		      crc32c_table[3][high & 0xff] ^ crc32c_table[2][(high >> 8) & 0xff] ^
		      crc32c_table[1][(high >> 16) & 0xff] ^ crc32c_table[0][high >> 24];
		p += 8;
		len -= 8;
	}

	while (len-- > 0)
		crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
/* Hardware path with the SSE4.2 crc32 instruction, which computes the same reflected
 * Castagnoli CRC as the table. Only called after the CPU check. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42_raw(uint32_t crc, const uint8_t *p,
                                                                   size_t len)
{
	uint64_t crc64 = crc;

	while (len >= 8) {
		uint64_t word;

		memcpy(&word, p, 8);
		crc64 = __builtin_ia32_crc32di(crc64, word);
		p += 8;
		len -= 8;
	}

	uint32_t crc32 = (uint32_t)crc64;
	while (len-- > 0)
		crc32 = __builtin_ia32_crc32qi(crc32, *p++);
	return crc32;
}
#endif

/* Not in the public header: the unit test declares these to compare the two paths. */
uint32_t crc32c_software(uint32_t crc, const void *data, size_t len);
uint32_t crc32c_hardware(uint32_t crc, const void *data, size_t len);
int crc32c_hardware_available(void);

uint32_t crc32c_software(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc32c_once, crc32c_setup);
	return ~crc32c_software_raw(~crc, data, len);
}

int crc32c_hardware_available(void)
{
	pthread_once(&crc32c_once, crc32c_setup);
#if defined(__x86_64__)
	return crc32c_have_sse42;
#else
	return 0;
#endif
}

/* Falls back to the software path when the CPU lacks SSE4.2. */
uint32_t crc32c_hardware(uint32_t crc, const void *data, size_t len)
{
#if defined(__x86_64__)
	if (crc32c_hardware_available())
		return ~crc32c_sse42_raw(~crc, data, len);
#endif
	return crc32c_software(crc, data, len);
}

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
	return crc32c_hardware(crc, data, len);
}
