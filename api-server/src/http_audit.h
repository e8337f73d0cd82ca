#ifndef STEMEDB_HTTP_AUDIT_H
#define STEMEDB_HTTP_AUDIT_H

/* Audit hooks of the read handlers: /v1/query, /v1/skeptic and /v1/layered start an
 * entry before they write the reply (so the reply can carry its query_id) and submit it
 * with the winner and the contributing assertions. */

#include <stdbool.h>

#include "audit.h"
#include "candidate.h"
#include "http_server.h"
#include "http_util.h"
#include "lens.h"

/* Validates X-Agent-Id (64 hex characters when present) and starts an entry with the
 * query parameters. Replies 400 and returns false on an invalid header. query_id gets
 * the record id, or an empty string when auditing is off. */
bool http_audit_begin(struct http_call *call, const struct http_query *q, const char *endpoint,
                      struct audit_entry *e, char query_id[AUDIT_ID_HEX_LEN + 1]);

/* Submits a lens resolution: the winner and every candidate with its lens score. */
void http_audit_submit_lens(struct http_call *call, struct audit_entry *e,
                            const struct candidate_list *list, const struct lens_result *result);

/* Submits a skeptic or layered analysis: the representative of the leading claim as the
 * winner (leading may be NULL), and every candidate with its skeptic weight, effective
 * confidence times tier weight. */
void http_audit_submit_claims(struct http_call *call, struct audit_entry *e,
                              const struct candidate_list *list, const struct lens_params *params,
                              const struct candidate *leading);

#endif
