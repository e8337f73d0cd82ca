/* Canonical assertion bytes and the envelope (canonical bytes, signatures and HLC
 * stamp). docs/formats.md gives both layouts byte by byte. All integers are
 * little-endian. */
#include "stemedb/assertion.h"

#include <math.h>
#include <string.h>

#define FLAG_PARENT 0x01
#define FLAG_EPOCH  0x02

/* Bytes of one signature in the envelope: agent id, signature, u64 timestamp. */
#define ENVELOPE_SIGNATURE_BYTES (STEMEDB_AGENT_ID_LEN + STEMEDB_SIGNATURE_LEN + 8)

static bool encode_object(const struct object_value *o, struct buf *out)
{
	buf_put_u8(out, (uint8_t)o->type);

	switch (o->type) {
	case OBJECT_TEXT:
	case OBJECT_REFERENCE:
		if (o->text_len > UINT32_MAX)
			return false;
		buf_put_u32le(out, (uint32_t)o->text_len);
		buf_append(out, o->text, o->text_len);
		return true;
	case OBJECT_NUMBER: {
		/* Adding +0.0 turns -0.0 into +0.0 and leaves every other value unchanged,
		 * so the two zeros, which compare equal, also hash equal. */
		double number = o->number + 0.0;
		uint64_t bits;

		memcpy(&bits, &number, sizeof(bits));
		buf_put_u64le(out, bits);
		return true;
	}
	case OBJECT_BOOLEAN:
		buf_put_u8(out, o->boolean ? 1 : 0);
		return true;
	}
	return false;
}

bool assertion_encode_canonical(const struct assertion *a, struct buf *out)
{
	if (a->subject_len > UINT16_MAX || a->predicate_len > UINT16_MAX)
		return false;

	buf_put_u8(out, STEMEDB_RECORD_ASSERTION);
	buf_put_u8(out, STEMEDB_RECORD_VERSION);
	buf_put_u16le(out, (uint16_t)a->subject_len);
	buf_append(out, a->subject, a->subject_len);
	buf_put_u16le(out, (uint16_t)a->predicate_len);
	buf_append(out, a->predicate, a->predicate_len);

	if (!encode_object(&a->object, out))
		return false;

	buf_put_u32le(out, a->confidence_micro);
	buf_put_u8(out, a->source_class);
	buf_put_u8(out, a->lifecycle);
	buf_append(out, a->source_hash, STEMEDB_HASH_LEN);

	uint8_t flags = (a->has_parent ? FLAG_PARENT : 0) | (a->has_epoch ? FLAG_EPOCH : 0);
	buf_put_u8(out, flags);
	if (a->has_parent)
		buf_append(out, a->parent_hash, STEMEDB_HASH_LEN);
	if (a->has_epoch)
		buf_append(out, a->epoch, STEMEDB_HASH_LEN);

	buf_put_u64le(out, a->timestamp);
	return true;
}

/* Reads a u16- or u32-prefixed string. Returns NULL (and fails the reader) when the
 * bytes run out. */
static const char *read_string(struct reader *r, size_t prefix_bytes, size_t *len)
{
	*len = prefix_bytes == 2 ? reader_u16le(r) : reader_u32le(r);
	return (const char *)reader_bytes(r, *len);
}

/* Decodes the object. Rejects an unknown type, a boolean byte other than 0 or 1, and a
 * number that the encoder would never write (-0.0, NaN or an infinity). */
static bool decode_object(struct reader *r, struct object_value *o)
{
	uint8_t type = reader_u8(r);

	if (type == OBJECT_TEXT || type == OBJECT_REFERENCE) {
		size_t len;
		const char *text = read_string(r, 4, &len);
		if (text == NULL)
			return false;
		object_set_text(o, (enum object_type)type, text, len);
		return true;
	}

	if (type == OBJECT_NUMBER) {
		uint64_t bits = reader_u64le(r);
		o->type = OBJECT_NUMBER;
		memcpy(&o->number, &bits, sizeof(bits));
		return r->ok && isfinite(o->number) && !(o->number == 0 && signbit(o->number));
	}

	if (type == OBJECT_BOOLEAN) {
		uint8_t value = reader_u8(r);
		o->type = OBJECT_BOOLEAN;
		o->boolean = value == 1;
		return r->ok && value <= 1;
	}
	return false;
}

static bool decode_strings(struct reader *r, struct assertion *a)
{
	size_t len;
	const char *subject = read_string(r, 2, &len);

	if (subject == NULL)
		return false;
	assertion_set_subject(a, subject, len);

	const char *predicate = read_string(r, 2, &len);
	if (predicate == NULL)
		return false;
	assertion_set_predicate(a, predicate, len);
	return true;
}

/* Decodes everything after the object. Rejects reserved flag bits. */
static bool decode_tail(struct reader *r, struct assertion *a)
{
	a->confidence_micro = reader_u32le(r);
	a->source_class = reader_u8(r);
	a->lifecycle = reader_u8(r);

	const uint8_t *source_hash = reader_bytes(r, STEMEDB_HASH_LEN);
	if (source_hash == NULL)
		return false;
	memcpy(a->source_hash, source_hash, STEMEDB_HASH_LEN);

	uint8_t flags = reader_u8(r);
	if ((flags & ~(FLAG_PARENT | FLAG_EPOCH)) != 0)
		return false;

	a->has_parent = (flags & FLAG_PARENT) != 0;
	const uint8_t *parent = a->has_parent ? reader_bytes(r, STEMEDB_HASH_LEN) : NULL;
	if (parent != NULL)
		memcpy(a->parent_hash, parent, STEMEDB_HASH_LEN);

	a->has_epoch = (flags & FLAG_EPOCH) != 0;
	const uint8_t *epoch = a->has_epoch ? reader_bytes(r, STEMEDB_HASH_LEN) : NULL;
	if (epoch != NULL)
		memcpy(a->epoch, epoch, STEMEDB_HASH_LEN);

	a->timestamp = reader_u64le(r);
	return r->ok;
}

/* Decodes one canonical record from the reader, leaving any bytes after it. */
static bool decode_canonical(struct reader *r, struct assertion *a)
{
	if (reader_u8(r) != STEMEDB_RECORD_ASSERTION || reader_u8(r) != STEMEDB_RECORD_VERSION)
		return false;

	if (!decode_strings(r, a) || !decode_object(r, &a->object) || !decode_tail(r, a))
		return false;

	/* The field rules also hold for stored bytes, so a decoded record is one that
	 * the encoder could have produced from a valid assertion. */
	char message[256];
	return assertion_validate(a, NULL, message, sizeof(message));
}

bool assertion_decode_canonical(const uint8_t *data, size_t len, struct assertion *a)
{
	struct reader r;

	reader_init(&r, data, len);
	if (!decode_canonical(&r, a))
		return false;
	return r.left == 0;
}

bool assertion_encode_envelope(const struct assertion *a, const struct hlc_stamp *hlc,
                               struct buf *out)
{
	if (a->signature_count > STEMEDB_SIGNATURES_MAX)
		return false;

	size_t length_at = out->len;
	buf_put_u32le(out, 0);
	if (!assertion_encode_canonical(a, out))
		return false;

	size_t canonical_len = out->len - length_at - 4;
	if (canonical_len > UINT32_MAX)
		return false;
	store_u32le(out->data + length_at, (uint32_t)canonical_len);

	buf_put_u8(out, (uint8_t)a->signature_count);
	for (size_t i = 0; i < a->signature_count; i++) {
		const struct signature *s = &a->signatures[i];
		buf_append(out, s->agent_id, STEMEDB_AGENT_ID_LEN);
		buf_append(out, s->signature, STEMEDB_SIGNATURE_LEN);
		buf_put_u64le(out, s->timestamp);
	}

	buf_put_u64le(out, hlc->wall_ms);
	buf_put_u32le(out, hlc->logical);
	buf_append(out, hlc->node_id, sizeof(hlc->node_id));
	return true;
}

static bool decode_signatures(struct reader *r, struct assertion *a)
{
	uint8_t count = reader_u8(r);

	if (!r->ok || count == 0 || count > STEMEDB_SIGNATURES_MAX)
		return false;

	for (size_t i = 0; i < count; i++) {
		const uint8_t *p = reader_bytes(r, ENVELOPE_SIGNATURE_BYTES);
		if (p == NULL)
			return false;

		struct signature *s = &a->signatures[i];
		memcpy(s->agent_id, p, STEMEDB_AGENT_ID_LEN);
		memcpy(s->signature, p + STEMEDB_AGENT_ID_LEN, STEMEDB_SIGNATURE_LEN);
		s->timestamp = load_u64le(p + STEMEDB_AGENT_ID_LEN + STEMEDB_SIGNATURE_LEN);
	}
	a->signature_count = count;
	return true;
}

bool assertion_decode_envelope(const uint8_t *data, size_t len, struct assertion *a,
                               struct hlc_stamp *hlc)
{
	struct reader r;

	reader_init(&r, data, len);
	uint32_t canonical_len = reader_u32le(&r);
	const uint8_t *canonical = reader_bytes(&r, canonical_len);
	if (canonical == NULL || !assertion_decode_canonical(canonical, canonical_len, a))
		return false;

	if (!decode_signatures(&r, a))
		return false;

	hlc->wall_ms = reader_u64le(&r);
	hlc->logical = reader_u32le(&r);
	const uint8_t *node_id = reader_bytes(&r, sizeof(hlc->node_id));
	if (node_id == NULL)
		return false;
	memcpy(hlc->node_id, node_id, sizeof(hlc->node_id));
	return r.left == 0;
}
