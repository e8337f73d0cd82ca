#ifndef STEMEDB_HTTP_HANDLERS_H
#define STEMEDB_HTTP_HANDLERS_H

/* Request handlers, one per route. Each runs on the worker thread that received the
 * request and replies exactly once, either at once or, for writes, after the commit
 * pipeline has completed the call. */

#include "http_server.h"

/* http_write.c */
void http_handle_assert(struct http_call *call);
void http_handle_batch(struct http_call *call);

/* http_read.c */
void http_handle_assertion(struct http_call *call);
void http_handle_query(struct http_call *call);
void http_handle_skeptic(struct http_call *call);
void http_handle_subject(struct http_call *call);

/* http_views.c */
void http_handle_layered(struct http_call *call);
void http_handle_trace(struct http_call *call);
/* Serves /v1/query: the subject_prefix form here, every other form by http_handle_query. */
void http_handle_query_route(struct http_call *call);

/* http_records.c: votes, co-signatures, epochs, sources and aliases */
void http_handle_vote(struct http_call *call);
void http_handle_assertion_votes(struct http_call *call);
void http_handle_cosign(struct http_call *call);
void http_handle_epoch(struct http_call *call);
void http_handle_epoch_get(struct http_call *call);
void http_handle_sources_list(struct http_call *call);
void http_handle_source_create(struct http_call *call);
void http_handle_source_get(struct http_call *call);
void http_handle_alias(struct http_call *call);

/* http_audit.c */
void http_handle_audit_queries(struct http_call *call);
void http_handle_audit_query(struct http_call *call);

/* http_feed.c */
void http_handle_feed(struct http_call *call);

/* http_agents.c */
void http_handle_agent(struct http_call *call);

/* http_ops.c */
void http_handle_health(struct http_call *call);
void http_handle_ready(struct http_call *call);
void http_handle_metrics(struct http_call *call);

#endif
