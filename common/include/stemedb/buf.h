#ifndef STEMEDB_BUF_H
#define STEMEDB_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Growable byte buffer. Allocation failure aborts the process, as every caller would
 * otherwise have to abort itself. */
struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_put_u8(struct buf *b, uint8_t v);
void buf_put_u16le(struct buf *b, uint16_t v);
void buf_put_u32le(struct buf *b, uint32_t v);
void buf_put_u64le(struct buf *b, uint64_t v);
void buf_put_u64be(struct buf *b, uint64_t v);

/* Little-endian and big-endian loads from unaligned memory. */
uint16_t load_u16le(const uint8_t *p);
uint32_t load_u32le(const uint8_t *p);
uint64_t load_u64le(const uint8_t *p);
uint64_t load_u64be(const uint8_t *p);
void store_u32le(uint8_t *p, uint32_t v);
void store_u64le(uint8_t *p, uint64_t v);
void store_u64be(uint8_t *p, uint64_t v);

/* Bounds-checked sequential reader over a byte range. Every read fails once the
 * reader has failed, so callers check `ok` once at the end. */
struct reader {
	const uint8_t *p;
	size_t left;
	int ok;
};

void reader_init(struct reader *r, const void *data, size_t len);
uint8_t reader_u8(struct reader *r);
uint16_t reader_u16le(struct reader *r);
uint32_t reader_u32le(struct reader *r);
uint64_t reader_u64le(struct reader *r);
/* Returns a pointer to the next len bytes and advances past them, or NULL. */
const uint8_t *reader_bytes(struct reader *r, size_t len);

#endif
