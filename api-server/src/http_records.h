#ifndef STEMEDB_HTTP_RECORDS_H
#define STEMEDB_HTTP_RECORDS_H

/* Read-side helpers of the signed records that the query handlers use. */

#include <stdbool.h>
#include <stdint.h>

#include "http_read.h"
#include "stemedb/assertion.h"
#include "stemedb/json_writer.h"

/* lens_vote_fn over a struct store (ctx): the sum of the counted vote weights on the
 * assertion, as a number from -1 per voter to 1 per voter. */
double http_records_vote_sum(void *ctx, const uint8_t hash[STEMEDB_HASH_LEN]);

/* Drops the candidates whose epoch is superseded, directly or through a chain of
 * superseding epochs, unless rp->include_superseded. A candidate whose epoch has no
 * stored record, or whose chain has a cycle, is kept and adds a warning to rp. Replies
 * 500 and returns false on a storage error. */
bool http_records_filter_superseded(struct http_call *call, struct read_params *rp,
                                    struct candidate_list *list);

/* Appends the candidates of rp's predicate under every subject aliased to rp's subject
 * (one level, at most READ_ALIASES_MAX subjects). Replies 500 and returns false on a
 * storage error. */
bool http_records_add_alias_candidates(struct http_call *call, struct read_params *rp,
                                       struct candidate_list *list);

/* Writes "aliases_included", "aliases_truncated", "superseded_excluded" and "warnings"
 * into an open reply object when set. */
void http_records_write_warnings(struct json_writer *w, const struct read_params *rp);

#endif
