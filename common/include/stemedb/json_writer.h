#ifndef STEMEDB_JSON_WRITER_H
#define STEMEDB_JSON_WRITER_H

/* Streaming JSON output into a struct buf, for replies that would otherwise be built
 * as a jansson tree and dumped. The writer inserts commas and colons itself, so callers
 * emit keys and values in order. It never emits invalid JSON from valid calls: strings
 * are escaped as RFC 8259 requires, invalid UTF-8 bytes become U+FFFD, and NaN or
 * infinity become null. Calls that do not match the nesting (a value where a key is
 * due, an end without a begin) are caller bugs and abort the process. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/buf.h"

/* Maximum nesting of objects and arrays. */
#define JSON_WRITER_DEPTH_MAX 32

/* Size of a buffer that fits any number json_format_double writes, with its NUL. */
#define JSON_DOUBLE_TEXT_MAX 32

struct json_writer {
	struct buf *out;
	uint32_t depth;
	bool after_key;                         /* a key was written and its value is due */
	bool in_object[JSON_WRITER_DEPTH_MAX];  /* container kind per level */
	bool has_member[JSON_WRITER_DEPTH_MAX]; /* the level has a member already */
};

/* Starts writing at the end of out, which the caller owns. */
void json_writer_init(struct json_writer *w, struct buf *out);

void json_writer_object_begin(struct json_writer *w);
void json_writer_object_end(struct json_writer *w);
void json_writer_array_begin(struct json_writer *w);
void json_writer_array_end(struct json_writer *w);

/* Writes an object key (NUL-terminated, escaped like any string). */
void json_writer_key(struct json_writer *w, const char *key);

void json_writer_string(struct json_writer *w, const char *text, size_t len);
/* Writes a NUL-terminated string. */
void json_writer_cstring(struct json_writer *w, const char *text);
/* Writes bytes as a string of 2 * len lowercase hex digits. */
void json_writer_hex(struct json_writer *w, const uint8_t *bytes, size_t len);
void json_writer_int(struct json_writer *w, int64_t value);
void json_writer_uint(struct json_writer *w, uint64_t value);
/* Writes a double with json_format_double, or null when it is NaN or infinite. */
void json_writer_double(struct json_writer *w, double value);
/* Writes millionths as an exact decimal: 441874 as 0.441874, 1000000 as 1.0. */
void json_writer_micro(struct json_writer *w, uint64_t millionths);
void json_writer_bool(struct json_writer *w, bool value);
/* Writes again the complete value that this writer wrote at out bytes [start, end),
 * for replies that contain the same object twice. */
void json_writer_repeat(struct json_writer *w, size_t start, size_t end);
void json_writer_null(struct json_writer *w);

/* Formats a finite double with the fewest significant digits, 15 to 17, that read back
 * as the same double. The notation is printf's %g with jansson's conventions. A ".0"
 * is added when there is neither a point nor an exponent, and the exponent has no '+'
 * and no leading zeros (1e-5, 1e20). Writes a NUL-terminated text into out and
 * returns its length. The value must be finite. */
size_t json_format_double(double value, char out[JSON_DOUBLE_TEXT_MAX]);

#endif
