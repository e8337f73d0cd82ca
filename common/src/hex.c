#include "stemedb/hex.h"

static const char HEX_DIGITS[] = "0123456789abcdef";

void hex_encode(const uint8_t *bytes, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = HEX_DIGITS[bytes[i] >> 4];
		out[2 * i + 1] = HEX_DIGITS[bytes[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

/* Returns the value of one hex digit, or -1 for any other character. */
static int hex_digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool hex_decode(const char *text, size_t text_len, uint8_t *out, size_t len)
{
	if (text == NULL || text_len != 2 * len)
		return false;

	for (size_t i = 0; i < len; i++) {
		int high = hex_digit_value(text[2 * i]);
		int low = hex_digit_value(text[2 * i + 1]);

		if (high < 0 || low < 0)
			return false;
		out[i] = (uint8_t)(high << 4 | low);
	}
	return true;
}
