/* Streaming JSON writer and the shortest round-trip formatting of doubles. */

#include "stemedb/json_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reserves room for n more bytes and returns where they go. The caller adds what it
 * wrote to out->len. */
static inline char *json_reserve(struct json_writer *w, size_t n)
{
	if (w->out->cap - w->out->len < n)
		buf_reserve(w->out, n);
	return (char *)w->out->data + w->out->len;
}

static inline void json_put(struct json_writer *w, const char *text, size_t len)
{
	memcpy(json_reserve(w, len), text, len);
	w->out->len += len;
}

static inline void json_put_char(struct json_writer *w, char c)
{
	*json_reserve(w, 1) = c;
	w->out->len++;
}

static void json_misuse(const char *problem)
{
	fprintf(stderr, "json_writer: %s, which is a bug in the caller\n", problem);
	abort();
}

/* Writes the comma that separates this value from the previous member, and checks that
 * a value is allowed here: inside an object only after a key. */
static void json_value_start(struct json_writer *w)
{
	uint32_t level = w->depth - 1;

	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth == 0)
		return;
	if (w->in_object[level])
		json_misuse("a value was written in an object where a key is due");
	if (w->has_member[level])
		json_put_char(w, ',');
	w->has_member[level] = true;
}

void json_writer_init(struct json_writer *w, struct buf *out)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
}

static void json_container_begin(struct json_writer *w, bool object)
{
	json_value_start(w);
	if (w->depth == JSON_WRITER_DEPTH_MAX)
		json_misuse("the nesting is deeper than JSON_WRITER_DEPTH_MAX");
	w->in_object[w->depth] = object;
	w->has_member[w->depth] = false;
	w->depth++;
	json_put_char(w, object ? '{' : '[');
}

static void json_container_end(struct json_writer *w, bool object)
{
	if (w->depth == 0 || w->in_object[w->depth - 1] != object || w->after_key)
		json_misuse("an end does not match the open object or array");
	w->depth--;
	json_put_char(w, object ? '}' : ']');
}

void json_writer_object_begin(struct json_writer *w)
{
	json_container_begin(w, true);
}

void json_writer_object_end(struct json_writer *w)
{
	json_container_end(w, true);
}

void json_writer_array_begin(struct json_writer *w)
{
	json_container_begin(w, false);
}

void json_writer_array_end(struct json_writer *w)
{
	json_container_end(w, false);
}

/* ---- Strings ---- */

/* Returns the length of the well-formed UTF-8 sequence at p (at most left bytes), or 0
 * when the bytes there are not one: overlong forms, surrogates and code points above
 * U+10FFFF are rejected as RFC 3629 requires. */
static size_t utf8_sequence_len(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	size_t len = 2;
	unsigned char low = 0x80, high = 0xbf;

	if (c >= 0xf0)
		len = 4;
	else if (c >= 0xe0)
		len = 3;
	if (c < 0xc2 || c > 0xf4 || left < len)
		return 0;
	if (c == 0xe0)
		low = 0xa0;
	else if (c == 0xed)
		high = 0x9f;
	else if (c == 0xf0)
		low = 0x90;
	else if (c == 0xf4)
		high = 0x8f;
	if (p[1] < low || p[1] > high)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	}
	return len;
}

/* Writes the escape of one byte below 0x20, a quote or a backslash. */
static void json_put_escape(struct json_writer *w, unsigned char c)
{
	static const char hex_digits[] = "0123456789abcdef";
	char text[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 15]};

	switch (c) {
	case '"':
		json_put(w, "\\\"", 2);
		return;
	case '\\':
		json_put(w, "\\\\", 2);
		return;
	case '\b':
		json_put(w, "\\b", 2);
		return;
	case '\f':
		json_put(w, "\\f", 2);
		return;
	case '\n':
		json_put(w, "\\n", 2);
		return;
	case '\r':
		json_put(w, "\\r", 2);
		return;
	case '\t':
		json_put(w, "\\t", 2);
		return;
	default:
		json_put(w, text, sizeof(text));
		return;
	}
}

/* Writes the text between quotes. Runs of bytes that need no escape are copied at
 * once, which is the common case for stored subjects and values. */
static void json_put_string_body(struct json_writer *w, const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t i = 0;

	while (i < len) {
		size_t run = i;
		size_t seq;

		while (run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
		       p[run] != '\\')
			run++;
		json_put(w, text + i, run - i);
		i = run;
		if (i == len)
			break;

		if (p[i] < 0x80) {
			json_put_escape(w, p[i]);
			i++;
			continue;
		}
		seq = utf8_sequence_len(p + i, len - i);
		if (seq == 0) {
			json_put(w, "\\ufffd", 6);
			i++;
			continue;
		}
		json_put(w, text + i, seq);
		i += seq;
	}
}

void json_writer_string(struct json_writer *w, const char *text, size_t len)
{
	json_value_start(w);
	json_put_char(w, '"');
	json_put_string_body(w, text, len);
	json_put_char(w, '"');
}

void json_writer_cstring(struct json_writer *w, const char *text)
{
	json_writer_string(w, text, strlen(text));
}

/* True when text needs no escape, as the keys that the code writes almost always do. */
static bool json_is_plain(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
			return false;
	}
	return true;
}

void json_writer_key(struct json_writer *w, const char *key)
{
	uint32_t level = w->depth - 1;
	size_t len = strlen(key);
	size_t n = 0;
	char *p;

	if (w->depth == 0 || !w->in_object[level] || w->after_key)
		json_misuse("a key was written outside an object or twice in a row");

	if (!json_is_plain(key, len)) {
		if (w->has_member[level])
			json_put_char(w, ',');
		json_put_char(w, '"');
		json_put_string_body(w, key, len);
		json_put(w, "\":", 2);
	} else {
		p = json_reserve(w, len + 4);
		if (w->has_member[level])
			p[n++] = ',';
		p[n++] = '"';
		memcpy(p + n, key, len);
		n += len;
		p[n++] = '"';
		p[n++] = ':';
		w->out->len += n;
	}
	w->has_member[level] = true;
	w->after_key = true;
}

void json_writer_hex(struct json_writer *w, const uint8_t *bytes, size_t len)
{
	static const char hex_digits[] = "0123456789abcdef";
	char *p;

	json_value_start(w);
	p = json_reserve(w, 2 * len + 2);
	*p++ = '"';
	for (size_t i = 0; i < len; i++) {
		*p++ = hex_digits[bytes[i] >> 4];
		*p++ = hex_digits[bytes[i] & 15];
	}
	*p = '"';
	w->out->len += 2 * len + 2;
}

/* ---- Numbers ---- */

/* Writes the decimal digits of value just before end, which needs 20 bytes of room
 * before it, and returns where they start. */
static char *format_u64(uint64_t value, char *end)
{
	char *p = end;

	do {
		*--p = (char)('0' + value % 10);
		value /= 10;
	} while (value != 0);
	return p;
}

void json_writer_uint(struct json_writer *w, uint64_t value)
{
	char text[24];
	char *start = format_u64(value, text + sizeof(text));

	json_value_start(w);
	json_put(w, start, (size_t)(text + sizeof(text) - start));
}

void json_writer_int(struct json_writer *w, int64_t value)
{
	char text[24];
	uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
	char *start = format_u64(magnitude, text + sizeof(text));

	if (value < 0)
		*--start = '-';
	json_value_start(w);
	json_put(w, start, (size_t)(text + sizeof(text) - start));
}

void json_writer_micro(struct json_writer *w, uint64_t millionths)
{
	char text[40];
	char *whole = format_u64(millionths / 1000000, text + 20);
	size_t len = (size_t)(text + 20 - whole);
	uint64_t fraction = millionths % 1000000;
	int digits = 6;

	/* The fraction keeps its leading zeros and loses its trailing ones, so 50 prints
	 * as 0.00005, and a whole number keeps one zero so that it stays a real. */
	whole[len++] = '.';
	while (digits > 1 && fraction % 10 == 0) {
		fraction /= 10;
		digits--;
	}
	for (int i = digits - 1; i >= 0; i--) {
		whole[len + (size_t)i] = (char)('0' + fraction % 10);
		fraction /= 10;
	}
	len += (size_t)digits;

	json_value_start(w);
	json_put(w, whole, len);
}

void json_writer_double(struct json_writer *w, double value)
{
	char text[JSON_DOUBLE_TEXT_MAX];
	size_t len;

	if (!isfinite(value)) {
		json_writer_null(w);
		return;
	}
	len = json_format_double(value, text);
	json_value_start(w);
	json_put(w, text, len);
}

void json_writer_bool(struct json_writer *w, bool value)
{
	json_value_start(w);
	if (value)
		json_put(w, "true", 4);
	else
		json_put(w, "false", 5);
}

void json_writer_repeat(struct json_writer *w, size_t start, size_t end)
{
	char *p;

	if (start > end || end > w->out->len)
		json_misuse("a repeated value lies outside the written output");
	json_value_start(w);

	/* Reserving may move the buffer, so the source address is taken afterwards. */
	p = json_reserve(w, end - start);
	memcpy(p, w->out->data + start, end - start);
	w->out->len += end - start;
}

void json_writer_null(struct json_writer *w)
{
	json_value_start(w);
	json_put(w, "null", 4);
}

/* ---- Doubles ---- */

typedef unsigned __int128 u128;

/* A decimal value digits x 10^(exponent - digit_count + 1): exponent is the power of
 * ten of the first digit, as in scientific notation. */
struct decimal {
	uint64_t digits;
	int digit_count;
	int exponent;
};

static const uint64_t powers_of_ten[20] = {1ull,
                                           10ull,
                                           100ull,
                                           1000ull,
                                           10000ull,
                                           100000ull,
                                           1000000ull,
                                           10000000ull,
                                           100000000ull,
                                           1000000000ull,
                                           10000000000ull,
                                           100000000000ull,
                                           1000000000000ull,
                                           10000000000000ull,
                                           100000000000000ull,
                                           1000000000000000ull,
                                           10000000000000000ull,
                                           100000000000000000ull,
                                           1000000000000000000ull,
                                           10000000000000000000ull};

static u128 power_of_ten_128(int k)
{
	return k < 20 ? (u128)powers_of_ten[k] : (u128)powers_of_ten[19] * powers_of_ten[k - 19];
}

/* Finds the shortest decimal of 15 to 17 digits that reads back as m x 2^-q, exactly,
 * with 128-bit integers. scaled = m x 10^k is the value times 10^k x 2^q, where k puts
 * 17 digits before the point. A p-digit candidate C reads back as the same double when
 * it lies strictly inside the rounding interval, whose half-width is half a unit in
 * the last place: |C x 10^(17-p) x 2^q - scaled| < 10^k / 2. When m is a power of two
 * the gap below is half as wide. Returns false when the value is outside the range
 * this covers (about 1e-6 to 2^53) and the caller must use printf. */
static bool shortest_decimal_fast(uint64_t m, int q, struct decimal *out)
{
	int k = 16 - (int)floor(log10(ldexp((double)m, -q)));
	u128 scaled, integer_part, fraction;

	if (q <= 0 || q > 100 || k < 0 || k > 22)
		return false;
	scaled = (u128)m * power_of_ten_128(k);
	integer_part = scaled >> q;
	if (integer_part >= (u128)powers_of_ten[17] && k > 0) {
		k--;
		scaled = (u128)m * power_of_ten_128(k);
	} else if (integer_part < (u128)powers_of_ten[16] && k < 22) {
		k++;
		scaled = (u128)m * power_of_ten_128(k);
	}
	integer_part = scaled >> q;
	if (integer_part < (u128)powers_of_ten[16] || integer_part >= (u128)powers_of_ten[17])
		return false;

	/* The integer part has 17 digits and fits 64 bits, so dividing it by 10^(17-p)
	 * stays in 64 bits. The remainder is that division's remainder, shifted back up,
	 * plus the bits below the point. */
	fraction = scaled & (((u128)1 << q) - 1);
	for (int p = 15; p <= 17; p++) {
		uint64_t divisor = powers_of_ten[17 - p];
		u128 unit = (u128)divisor << q;
		u128 candidate = (uint64_t)integer_part / divisor;
		u128 remainder = ((u128)((uint64_t)integer_part % divisor) << q) | fraction;
		u128 reached, distance, limit = power_of_ten_128(k);
		int exponent = 16 - k;

		if (2 * remainder > unit || (2 * remainder == unit && (candidate & 1) != 0))
			candidate++;
		reached = candidate * unit;
		distance = reached > scaled ? reached - scaled : scaled - reached;
		if (reached < scaled && m == (1ull << 52))
			distance *= 2;
		if (p < 17 && 2 * distance >= limit)
			continue;

		if (candidate == (u128)powers_of_ten[p]) {
			candidate = powers_of_ten[p - 1];
			exponent++;
		}
		out->digits = (uint64_t)candidate;
		out->digit_count = p;
		out->exponent = exponent;
		return true;
	}
	return false;
}

/* Writes a decimal in %g notation for precision digit_count, without trailing zeros,
 * with a ".0" when the text would otherwise read as an integer, and with the exponent
 * written as jansson writes it. */
static size_t decimal_to_text(struct decimal d, bool negative, char *out)
{
	char digits[24];
	char *first = format_u64(d.digits, digits + sizeof(digits));
	size_t count = (size_t)(digits + sizeof(digits) - first);
	size_t len = 0;

	while (count > 1 && first[count - 1] == '0')
		count--;
	if (negative)
		out[len++] = '-';

	if (d.exponent < -4 || d.exponent >= d.digit_count) {
		out[len++] = first[0];
		if (count > 1) {
			out[len++] = '.';
			memcpy(out + len, first + 1, count - 1);
			len += count - 1;
		}
		len += (size_t)sprintf(out + len, "e%d", d.exponent);
		return len;
	}

	if (d.exponent < 0) {
		out[len++] = '0';
		out[len++] = '.';
		for (int i = -1; i > d.exponent; i--)
			out[len++] = '0';
		memcpy(out + len, first, count);
		return len + count;
	}

	for (size_t i = 0; i <= (size_t)d.exponent; i++)
		out[len++] = i < count ? first[i] : '0';
	out[len++] = '.';
	if (count > (size_t)d.exponent + 1) {
		memcpy(out + len, first + d.exponent + 1, count - (size_t)d.exponent - 1);
		len += count - (size_t)d.exponent - 1;
	} else {
		out[len++] = '0';
	}
	return len;
}

/* Rewrites printf's exponent ("e+05", "e-07") as jansson does ("e5", "e-7") and adds
 * ".0" to text that would read as an integer. */
static size_t printf_text_to_json(char *text, size_t len)
{
	char *e = strchr(text, 'e');
	char *digits, *end;

	if (e == NULL) {
		if (strchr(text, '.') == NULL) {
			memcpy(text + len, ".0", 3);
			len += 2;
		}
		return len;
	}

	digits = e + 1;
	if (*digits == '-')
		digits++;
	end = e + 1;
	if (*end == '+' || *end == '-')
		end++;
	while (*end == '0' && end[1] != '\0')
		end++;
	memmove(digits, end, strlen(end) + 1);
	return strlen(text);
}

/* Tries %.15g, %.16g and %.17g and keeps the first that reads back exactly. */
static size_t shortest_decimal_printf(double value, char *out)
{
	int len = 0;

	for (int precision = 15; precision <= 17; precision++) {
		len = snprintf(out, JSON_DOUBLE_TEXT_MAX - 3, "%.*g", precision, value);
		if (strtod(out, NULL) == value)
			break;
	}
	return printf_text_to_json(out, (size_t)len);
}

size_t json_format_double(double value, char out[JSON_DOUBLE_TEXT_MAX])
{
	uint64_t bits;
	uint64_t mantissa;
	int biased_exponent;
	struct decimal d;
	size_t len;

	if (value == 0) {
		len = signbit(value) ? 4 : 3;
		memcpy(out, signbit(value) ? "-0.0" : "0.0", len + 1);
		return len;
	}

	memcpy(&bits, &value, sizeof(bits));
	biased_exponent = (int)((bits >> 52) & 0x7ff);
	mantissa = (bits & ((1ull << 52) - 1)) | (1ull << 52);
	if (biased_exponent == 0 || !shortest_decimal_fast(mantissa, 1075 - biased_exponent, &d))
		return shortest_decimal_printf(value, out);

	len = decimal_to_text(d, (bits >> 63) != 0, out);
	out[len] = '\0';
	return len;
}
