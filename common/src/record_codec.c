/* Canonical bytes and envelopes of votes, epochs, co-signatures, sources, aliases and
 * trust outcomes.
 * docs/formats.md gives every layout byte by byte. All integers are little-endian. */
#include <stdlib.h>
#include <string.h>

#include "stemedb/records.h"

#define FLAG_SUPERSEDES 0x01
#define FLAG_CONTENT    0x01
#define SIGNER_BYTES    (STEMEDB_AGENT_ID_LEN + STEMEDB_SIGNATURE_LEN)
#define HLC_BYTES       (8 + 4 + 16)

void record_init(struct record *r, uint8_t type)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
}

void record_free(struct record *r)
{
	switch (r->type) {
	case STEMEDB_RECORD_EPOCH:
		free(r->u.epoch.name);
		free(r->u.epoch.description);
		break;
	case STEMEDB_RECORD_SOURCE:
		free(r->u.source.uri);
		free(r->u.source.title);
		free(r->u.source.content);
		break;
	case STEMEDB_RECORD_ALIAS:
		free(r->u.alias.subject_a);
		free(r->u.alias.subject_b);
		break;
	case STEMEDB_RECORD_TRUST_OUTCOME:
		free(r->u.trust_outcome.note);
		break;
	default:
		break;
	}
	record_init(r, r->type);
}

void record_set_string(char **dst, size_t *dst_len, const char *s, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, s, len);
	copy[len] = '\0';
	free(*dst);
	*dst = copy;
	*dst_len = len;
}

const char *record_type_name(uint8_t type)
{
	switch (type) {
	case STEMEDB_RECORD_VOTE:
		return "vote";
	case STEMEDB_RECORD_EPOCH:
		return "epoch";
	case STEMEDB_RECORD_COSIGNATURE:
		return "cosignature";
	case STEMEDB_RECORD_SOURCE:
		return "source";
	case STEMEDB_RECORD_ALIAS:
		return "alias";
	case STEMEDB_RECORD_TRUST_OUTCOME:
		return "trust-outcome";
	default:
		return NULL;
	}
}

static bool put_string(struct buf *out, const char *s, size_t len, size_t prefix_bytes)
{
	if (prefix_bytes == 2) {
		if (len > UINT16_MAX)
			return false;
		buf_put_u16le(out, (uint16_t)len);
	} else {
		if (len > UINT32_MAX)
			return false;
		buf_put_u32le(out, (uint32_t)len);
	}
	buf_append(out, s, len);
	return true;
}

static bool encode_epoch(const struct epoch *e, struct buf *out)
{
	static const uint8_t zero[STEMEDB_HASH_LEN];

	if (!put_string(out, e->name, e->name_len, 2) ||
	    !put_string(out, e->description, e->description_len, 4))
		return false;

	/* The superseded id is always present and all zeros when the flag is clear. */
	buf_put_u8(out, e->has_supersedes ? FLAG_SUPERSEDES : 0);
	buf_append(out, e->has_supersedes ? e->supersedes : zero, STEMEDB_HASH_LEN);
	buf_put_u64le(out, e->timestamp);
	return true;
}

static bool encode_source(const struct source_record *s, struct buf *out)
{
	if (!put_string(out, s->uri, s->uri_len, 2) || !put_string(out, s->title, s->title_len, 2))
		return false;

	buf_put_u8(out, s->source_class);
	buf_put_u8(out, s->has_content ? FLAG_CONTENT : 0);
	if (s->has_content && !put_string(out, s->content, s->content_len, 4))
		return false;
	buf_put_u64le(out, s->timestamp);
	return true;
}

static bool encode_alias(const struct alias *a, struct buf *out)
{
	if (!put_string(out, a->subject_a, a->subject_a_len, 2) ||
	    !put_string(out, a->subject_b, a->subject_b_len, 2))
		return false;

	buf_put_u64le(out, a->timestamp);
	return true;
}

static bool encode_trust_outcome(const struct trust_outcome_record *t, struct buf *out)
{
	buf_append(out, t->agent_id, STEMEDB_AGENT_ID_LEN);
	buf_put_u8(out, t->accurate ? 1 : 0);
	buf_put_u64le(out, t->timestamp);
	return put_string(out, t->note, t->note_len, 2);
}

bool record_encode_canonical(const struct record *r, struct buf *out)
{
	buf_put_u8(out, r->type);
	buf_put_u8(out, STEMEDB_RECORD_VERSION);

	switch (r->type) {
	case STEMEDB_RECORD_VOTE:
		buf_append(out, r->u.vote.assertion_hash, STEMEDB_HASH_LEN);
		buf_append(out, r->u.vote.voter, STEMEDB_AGENT_ID_LEN);
		buf_put_u32le(out, (uint32_t)r->u.vote.weight_micro);
		buf_put_u64le(out, r->u.vote.timestamp);
		return true;
	case STEMEDB_RECORD_EPOCH:
		return encode_epoch(&r->u.epoch, out);
	case STEMEDB_RECORD_COSIGNATURE:
		buf_append(out, r->u.cosignature.assertion_hash, STEMEDB_HASH_LEN);
		buf_append(out, r->u.cosignature.agent_id, STEMEDB_AGENT_ID_LEN);
		buf_put_u64le(out, r->u.cosignature.timestamp);
		return true;
	case STEMEDB_RECORD_SOURCE:
		return encode_source(&r->u.source, out);
	case STEMEDB_RECORD_ALIAS:
		return encode_alias(&r->u.alias, out);
	case STEMEDB_RECORD_TRUST_OUTCOME:
		return encode_trust_outcome(&r->u.trust_outcome, out);
	default:
		return false;
	}
}

/* Reads a u16- or u32-prefixed string into owned storage. */
static bool read_string(struct reader *rd, size_t prefix_bytes, char **dst, size_t *dst_len)
{
	size_t len = prefix_bytes == 2 ? reader_u16le(rd) : reader_u32le(rd);
	const uint8_t *bytes = reader_bytes(rd, len);

	if (bytes == NULL)
		return false;
	record_set_string(dst, dst_len, (const char *)bytes, len);
	return true;
}

static bool read_fixed(struct reader *rd, uint8_t *out, size_t len)
{
	const uint8_t *bytes = reader_bytes(rd, len);

	if (bytes == NULL)
		return false;
	memcpy(out, bytes, len);
	return true;
}

static bool decode_epoch(struct reader *rd, struct epoch *e)
{
	uint8_t flags;

	if (!read_string(rd, 2, &e->name, &e->name_len) ||
	    !read_string(rd, 4, &e->description, &e->description_len))
		return false;

	flags = reader_u8(rd);
	if ((flags & ~FLAG_SUPERSEDES) != 0 || !read_fixed(rd, e->supersedes, STEMEDB_HASH_LEN))
		return false;
	e->has_supersedes = (flags & FLAG_SUPERSEDES) != 0;
	e->timestamp = reader_u64le(rd);
	return true;
}

static bool decode_source(struct reader *rd, struct source_record *s)
{
	uint8_t flags;

	if (!read_string(rd, 2, &s->uri, &s->uri_len) ||
	    !read_string(rd, 2, &s->title, &s->title_len))
		return false;

	s->source_class = reader_u8(rd);
	flags = reader_u8(rd);
	if (s->source_class >= SOURCE_CLASS_COUNT || (flags & ~FLAG_CONTENT) != 0)
		return false;
	s->has_content = (flags & FLAG_CONTENT) != 0;
	if (s->has_content && !read_string(rd, 4, &s->content, &s->content_len))
		return false;
	s->timestamp = reader_u64le(rd);
	return true;
}

static bool decode_trust_outcome(struct reader *rd, struct trust_outcome_record *t)
{
	uint8_t outcome;

	if (!read_fixed(rd, t->agent_id, STEMEDB_AGENT_ID_LEN))
		return false;
	outcome = reader_u8(rd);
	if (outcome > 1)
		return false;
	t->accurate = outcome == 1;
	t->timestamp = reader_u64le(rd);
	return read_string(rd, 2, &t->note, &t->note_len);
}

static bool decode_body(struct reader *rd, struct record *r)
{
	switch (r->type) {
	case STEMEDB_RECORD_VOTE:
		read_fixed(rd, r->u.vote.assertion_hash, STEMEDB_HASH_LEN);
		read_fixed(rd, r->u.vote.voter, STEMEDB_AGENT_ID_LEN);
		r->u.vote.weight_micro = (int32_t)reader_u32le(rd);
		r->u.vote.timestamp = reader_u64le(rd);
		return r->u.vote.weight_micro >= -STEMEDB_VOTE_WEIGHT_MAX &&
		       r->u.vote.weight_micro <= STEMEDB_VOTE_WEIGHT_MAX;
	case STEMEDB_RECORD_EPOCH:
		return decode_epoch(rd, &r->u.epoch);
	case STEMEDB_RECORD_COSIGNATURE:
		read_fixed(rd, r->u.cosignature.assertion_hash, STEMEDB_HASH_LEN);
		read_fixed(rd, r->u.cosignature.agent_id, STEMEDB_AGENT_ID_LEN);
		r->u.cosignature.timestamp = reader_u64le(rd);
		return true;
	case STEMEDB_RECORD_SOURCE:
		return decode_source(rd, &r->u.source);
	case STEMEDB_RECORD_ALIAS:
		if (!read_string(rd, 2, &r->u.alias.subject_a, &r->u.alias.subject_a_len) ||
		    !read_string(rd, 2, &r->u.alias.subject_b, &r->u.alias.subject_b_len))
			return false;
		r->u.alias.timestamp = reader_u64le(rd);
		return true;
	case STEMEDB_RECORD_TRUST_OUTCOME:
		return decode_trust_outcome(rd, &r->u.trust_outcome);
	default:
		return false;
	}
}

bool record_decode_canonical(const uint8_t *data, size_t len, struct record *r)
{
	struct reader rd;
	uint8_t type;

	reader_init(&rd, data, len);
	type = reader_u8(&rd);
	if (reader_u8(&rd) != STEMEDB_RECORD_VERSION || record_type_name(type) == NULL)
		return false;

	record_free(r);
	record_init(r, type);
	if (!decode_body(&rd, r))
		return false;
	return rd.ok && rd.left == 0;
}

bool record_encode_envelope(const struct record *r, const struct hlc_stamp *hlc, struct buf *out)
{
	size_t length_at = out->len;

	buf_put_u32le(out, 0);
	if (!record_encode_canonical(r, out) || out->len - length_at - 4 > UINT32_MAX)
		return false;
	store_u32le(out->data + length_at, (uint32_t)(out->len - length_at - 4));

	buf_put_u8(out, (uint8_t)r->signer_count);
	for (size_t i = 0; i < r->signer_count; i++) {
		buf_append(out, r->signers[i].agent_id, STEMEDB_AGENT_ID_LEN);
		buf_append(out, r->signers[i].signature, STEMEDB_SIGNATURE_LEN);
	}
	buf_put_u64le(out, hlc->wall_ms);
	buf_put_u32le(out, hlc->logical);
	buf_append(out, hlc->node_id, sizeof(hlc->node_id));
	return true;
}

bool record_decode_envelope(const uint8_t *data, size_t len, struct record *r,
                            struct hlc_stamp *hlc)
{
	struct reader rd;
	uint32_t canonical_len;
	const uint8_t *canonical;
	size_t count;

	reader_init(&rd, data, len);
	canonical_len = reader_u32le(&rd);
	canonical = reader_bytes(&rd, canonical_len);
	if (canonical == NULL || !record_decode_canonical(canonical, canonical_len, r))
		return false;

	count = reader_u8(&rd);
	if (count > STEMEDB_RECORD_SIGNERS_MAX || rd.left != count * SIGNER_BYTES + HLC_BYTES)
		return false;
	r->signer_count = count;
	for (size_t i = 0; i < count; i++) {
		read_fixed(&rd, r->signers[i].agent_id, STEMEDB_AGENT_ID_LEN);
		read_fixed(&rd, r->signers[i].signature, STEMEDB_SIGNATURE_LEN);
	}
	hlc->wall_ms = reader_u64le(&rd);
	hlc->logical = reader_u32le(&rd);
	read_fixed(&rd, hlc->node_id, sizeof(hlc->node_id));
	return rd.ok && rd.left == 0;
}
