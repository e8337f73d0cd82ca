#ifndef STEMEDB_CRC32C_H
#define STEMEDB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI and ext4.
 * Pass 0 as crc for a fresh checksum, or a previous result to continue it.
 * crc32c(0, "123456789", 9) == 0xE3069283. Uses SSE4.2 when the CPU has it. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
