#include "stemedb/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

void buf_reserve(struct buf *b, size_t extra)
{
	if (extra <= b->cap - b->len)
		return;

	if (extra > SIZE_MAX / 2 - b->len) {
		fprintf(stderr, "buf_reserve: %zu + %zu bytes overflows size_t\n", b->len, extra);
		abort();
	}

	size_t want = b->len + extra;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < want)
		cap *= 2;

	uint8_t *data = realloc(b->data, cap);
	if (data == NULL) {
		fprintf(stderr, "buf_reserve: realloc of %zu bytes failed\n", cap);
		abort();
	}
	b->data = data;
	b->cap = cap;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
	if (len == 0)
		return;

	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

void buf_put_u8(struct buf *b, uint8_t v)
{
	buf_append(b, &v, 1);
}

void buf_put_u16le(struct buf *b, uint16_t v)
{
	uint8_t bytes[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

	buf_append(b, bytes, sizeof(bytes));
}

void buf_put_u32le(struct buf *b, uint32_t v)
{
	uint8_t bytes[4];

	for (int i = 0; i < 4; i++)
		bytes[i] = (uint8_t)(v >> (8 * i));
	buf_append(b, bytes, sizeof(bytes));
}

void buf_put_u64le(struct buf *b, uint64_t v)
{
	uint8_t bytes[8];

	store_u64le(bytes, v);
	buf_append(b, bytes, sizeof(bytes));
}

void buf_put_u64be(struct buf *b, uint64_t v)
{
	uint8_t bytes[8];

	store_u64be(bytes, v);
	buf_append(b, bytes, sizeof(bytes));
}

uint16_t load_u16le(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

uint32_t load_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t load_u64le(const uint8_t *p)
{
	return (uint64_t)load_u32le(p) | (uint64_t)load_u32le(p + 4) << 32;
}

uint64_t load_u64be(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void store_u32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void store_u64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void store_u64be(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[7 - i] = (uint8_t)(v >> (8 * i));
}

void reader_init(struct reader *r, const void *data, size_t len)
{
	r->p = data;
	r->left = len;
	r->ok = 1;
}

const uint8_t *reader_bytes(struct reader *r, size_t len)
{
	if (!r->ok || len > r->left) {
		r->ok = 0;
		return NULL;
	}

	const uint8_t *start = r->p;
	r->p += len;
	r->left -= len;
	return start;
}

uint8_t reader_u8(struct reader *r)
{
	const uint8_t *p = reader_bytes(r, 1);

	return p ? p[0] : 0;
}

uint16_t reader_u16le(struct reader *r)
{
	const uint8_t *p = reader_bytes(r, 2);

	return p ? load_u16le(p) : 0;
}

uint32_t reader_u32le(struct reader *r)
{
	const uint8_t *p = reader_bytes(r, 4);

	return p ? load_u32le(p) : 0;
}

uint64_t reader_u64le(struct reader *r)
{
	const uint8_t *p = reader_bytes(r, 8);

	return p ? load_u64le(p) : 0;
}
