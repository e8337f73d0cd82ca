#ifndef STEMEDB_HTTP_READ_H
#define STEMEDB_HTTP_READ_H

/* Query parsing, candidate loading and JSON writers that /v1/query, /v1/skeptic and the
 * views of http_views.c share. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "candidate.h"
#include "http_server.h"
#include "http_util.h"
#include "lens.h"

#define READ_WARNINGS_MAX 8
#define READ_WARNING_LEN  200
#define READ_ALIASES_MAX  32

/* Parameters shared by /v1/query and /v1/skeptic. Strings point into the query. */
struct read_params {
	const char *subject;
	size_t subject_len;
	const char *predicate;
	size_t predicate_len;
	bool has_as_of;
	uint64_t as_of;
	bool has_lifecycle;
	uint8_t lifecycle;
	bool has_source_class;
	uint8_t source_class;
	enum lens_kind lens;
	uint64_t limit;
	struct lens_params lens_params;
	char query_id[AUDIT_ID_HEX_LEN + 1]; /* audit record id; empty when not audited */
	bool include_superseded;             /* keep candidates whose epoch is superseded */
	/* Set while loading candidates: candidates dropped for a superseded epoch, and the
	 * fail-open warnings that the reply lists under "warnings". */
	uint64_t superseded_excluded;
	size_t alias_count;     /* aliased subjects whose candidates were added */
	bool aliases_truncated; /* more than READ_ALIASES_MAX aliases: the rest were skipped */
	size_t warning_count;
	char warnings[READ_WARNINGS_MAX][READ_WARNING_LEN];
};

/* Reads subject, predicate, the filters and the lens options from q. Replies 400 and
 * returns false on the first invalid or missing parameter. */
bool http_read_params_parse(struct http_call *call, const struct http_query *q,
                            struct read_params *rp);

/* Reads the optional filters (as_of, lifecycle, source_class) and lens options (decay,
 * tolerance) from q. Replies 400 and returns false on the first invalid one. */
bool http_read_options_parse(struct http_call *call, const struct http_query *q,
                             struct read_params *rp);

/* Writes one candidate with its effective confidence and, when result has one, the
 * lens score of candidate index. */
void http_read_write_candidate(struct json_writer *w, const struct candidate *c,
                               const struct lens_params *lp, const struct lens_result *result,
                               size_t index);

/* Scans the candidates of rp's (subject, predicate) and drops those outside the
 * lifecycle and source class filters and, unless rp->include_superseded, those in a
 * superseded epoch; fail-open warnings go into rp. Replies 500 and returns false on a
 * storage error. */
bool http_read_load_candidates(struct http_call *call, struct read_params *rp,
                               struct candidate_list *list);

/* Runs the common start of the audited read endpoints (query, skeptic, layered):
 * readiness, parameter parsing with the endpoint's parameter names, candidate loading
 * and the start of the audit entry. On failure it has replied and freed what it made,
 * and returns false; on success the caller owns q, list and entry. */
bool http_read_begin(struct http_call *call, const char *const *param_names, const char *endpoint,
                     struct http_query *q, struct read_params *rp, struct candidate_list *list,
                     struct audit_entry *entry);

/* Writes {"type", "value"} as object_value_to_json builds it. */
void http_read_write_object(struct json_writer *w, const struct object_value *o);

/* Writes one skeptic claim: value, share, weight, agents, source classes, assertions. */
void http_read_write_claim(struct json_writer *w, const struct claim *claim,
                           const struct candidate *items);

/* Opens the reply object and writes subject, predicate, as_of, reference_time and,
 * when set, query_id. */
void http_read_write_header(struct json_writer *w, const struct read_params *rp);

#endif
