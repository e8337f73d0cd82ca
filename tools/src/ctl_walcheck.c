/* Offline checks of a WAL directory and of assertion records. */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "ctl_backup.h"
#include "stemedb/assertion.h"
#include "stemedb/records.h"
#include "stemedb/wal_segment.h"

bool ctl_check_envelope(const uint8_t *payload, size_t len, uint8_t hash[32], uint64_t *wall_ms,
                        char *why, size_t why_size)
{
	struct assertion a;
	struct hlc_stamp hlc;
	size_t bad = 0;
	bool ok = false;

	assertion_init(&a);
	if (!assertion_decode_envelope(payload, len, &a, &hlc)) {
		snprintf(why, why_size, "the envelope does not decode");
		goto done;
	}
	*wall_ms = hlc.wall_ms;
	if (!assertion_hash(&a, hash)) {
		snprintf(why, why_size, "the canonical bytes cannot be hashed");
		goto done;
	}

	switch (assertion_verify_signatures(&a, hash, &bad)) {
	case SIGNATURES_VALID:
		ok = true;
		break;
	case SIGNATURES_MISSING:
		snprintf(why, why_size, "it has no signature");
		break;
	case SIGNATURES_INVALID:
		snprintf(why, why_size, "signature %zu does not verify", bad);
		break;
	case SIGNATURES_DUPLICATE:
		snprintf(why, why_size, "signature %zu repeats an agent", bad);
		break;
	}

done:
	assertion_free(&a);
	return ok;
}

/* Decodes a vote, epoch, co-signature, source or alias record and checks its id
 * and signers. */
static bool check_signed_record(const uint8_t *payload, size_t len, char *why, size_t why_size)
{
	struct record r;
	struct hlc_stamp hlc;
	uint8_t id[STEMEDB_HASH_LEN];
	size_t bad = 0;
	enum record_check check;
	bool ok = false;

	record_init(&r, 0);
	if (!record_decode_envelope(payload, len, &r, &hlc)) {
		snprintf(why, why_size, "the envelope does not decode");
		goto done;
	}
	if (!record_id(&r, id)) {
		snprintf(why, why_size, "the canonical bytes cannot be hashed");
		goto done;
	}
	check = record_verify(&r, id, &bad);
	ok = check == RECORD_VALID;
	if (!ok)
		snprintf(why, why_size, "signer %zu fails verification (check %d)", bad,
		         (int)check);

done:
	record_free(&r);
	return ok;
}

struct record_ctx {
	const char *segment;
	uint64_t cursor;
	bool check_records;
	struct ctl_wal_summary *summary;
	struct ctl_problems *problems;
};

static bool on_record(void *arg, uint64_t offset, uint64_t next_offset, uint8_t type,
                      const uint8_t *payload, size_t payload_len)
{
	struct record_ctx *c = arg;
	uint8_t hash[32];
	uint64_t wall = 0;
	char why[256];

	(void)next_offset;
	if (offset >= c->cursor)
		c->summary->records_after_cursor++;
	if (type != STEMEDB_RECORD_ASSERTION && record_type_name(type) == NULL) {
		ctl_problem(c->problems, "%s: record at offset %" PRIu64 " has unknown type %u",
		            c->segment, offset, type);
		return true;
	}
	if (c->check_records &&
	    !(type == STEMEDB_RECORD_ASSERTION
	              ? ctl_check_envelope(payload, payload_len, hash, &wall, why, sizeof(why))
	              : check_signed_record(payload, payload_len, why, sizeof(why)))) {
		ctl_problem(c->problems, "%s: record of type %u at offset %" PRIu64 ": %s",
		            c->segment, type, offset, why);
		return true;
	}
	if (payload_len >= 28 &&
	    load_u64le(payload + payload_len - 28) > c->summary->max_hlc_wall_ms)
		c->summary->max_hlc_wall_ms = load_u64le(payload + payload_len - 28);
	return true;
}

static void check_segment(const char *dir, uint64_t base, bool last, bool allow_tail,
                          struct record_ctx *c, uint64_t *expected_base)
{
	char name[WAL_SEGMENT_NAME_LEN + 1], path[4200], err[1024];
	struct wal_segment_info info;

	wal_segment_format_name(base, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	c->segment = path;
	if (*expected_base != UINT64_MAX && base != *expected_base)
		ctl_problem(c->problems,
		            "%s starts at offset %" PRIu64 ", but the previous segment ends at "
		            "%" PRIu64 ", so records are missing",
		            path, base, *expected_base);

	if (wal_segment_scan(path, last && allow_tail, on_record, c, &info, err, sizeof(err)) !=
	    WAL_SEGMENT_OK) {
		ctl_problem(c->problems, "%s", err);
		*expected_base = UINT64_MAX;
		return;
	}
	if (info.valid_size < info.file_size)
		c->summary->tail_bytes = info.file_size - info.valid_size;
	c->summary->end = info.end;
	*expected_base = info.end;
}

bool ctl_wal_check(const char *dir, uint64_t cursor, bool allow_tail, bool check_records,
                   struct ctl_wal_summary *out, struct ctl_problems *problems)
{
	struct wal_segment_list list;
	struct record_ctx c = {.cursor = cursor,
	                       .check_records = check_records,
	                       .summary = out,
	                       .problems = problems};
	uint64_t expected = UINT64_MAX;
	char err[1024];

	memset(out, 0, sizeof(*out));
	out->end = cursor;
	if (wal_segment_list_dir(dir, &list, err, sizeof(err)) != WAL_SEGMENT_OK) {
		ctl_problem(problems, "%s", err);
		return false;
	}

	out->segments = list.count;
	if (list.count > 0) {
		out->first_base = list.bases[0];
		if (list.bases[0] > cursor)
			ctl_problem(problems,
			            "the oldest WAL segment in %s starts at offset %" PRIu64
			            ", after the store's cursor %" PRIu64
			            ", so records are missing",
			            dir, list.bases[0], cursor);
	}
	for (size_t i = 0; i < list.count; i++)
		check_segment(dir, list.bases[i], i + 1 == list.count, allow_tail, &c, &expected);

	if (list.count > 0 && out->end < cursor)
		ctl_problem(problems,
		            "the WAL in %s ends at offset %" PRIu64 ", before the store's cursor "
		            "%" PRIu64,
		            dir, out->end, cursor);
	wal_segment_list_free(&list);
	return true;
}
