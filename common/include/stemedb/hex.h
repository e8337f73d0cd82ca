#ifndef STEMEDB_HEX_H
#define STEMEDB_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes 2 * len lowercase hex characters and a terminating NUL to out, which must
 * hold 2 * len + 1 bytes. */
void hex_encode(const uint8_t *bytes, size_t len, char *out);

/* Decodes exactly 2 * len hex characters (either case) from text into out.
 * Returns false when text is not exactly that long or contains a non-hex character. */
bool hex_decode(const char *text, size_t text_len, uint8_t *out, size_t len);

#endif
