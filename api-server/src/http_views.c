/* Read-side views over the stored assertions: the layered view per source tier. */

#include <stdlib.h>
#include <string.h>

#include "http_handlers.h"
#include "http_read.h"
#include "http_util.h"
#include "lens.h"

static const char *const layered_param_names[] = {"subject", "predicate", "as_of", "lifecycle",
                                                  "decay",   "tolerance", NULL};

/* Writes the leading claim of a skeptic result, or null when it has no claim. */
static void write_leading_claim(struct json_writer *w, const struct skeptic_result *result,
                                const struct candidate *items)
{
	if (result->claims.count == 0) {
		json_writer_null(w);
		return;
	}
	http_read_write_claim(w, &result->claims.claims[0], items);
}

static void write_tier(struct json_writer *w, const struct layered_tier *layer)
{
	json_writer_object_begin(w);
	json_writer_key(w, "source_class");
	json_writer_cstring(w, source_class_name(layer->tier));
	json_writer_key(w, "tier");
	json_writer_uint(w, layer->tier);
	json_writer_key(w, "candidate_count");
	json_writer_uint(w, layer->count);
	json_writer_key(w, "claim_count");
	json_writer_uint(w, layer->skeptic.claims.count);
	json_writer_key(w, "status");
	json_writer_cstring(w, skeptic_status_name(layer->skeptic.status));
	json_writer_key(w, "conflict_score");
	json_writer_double(w, layer->skeptic.conflict_score);
	json_writer_key(w, "leading_claim");
	write_leading_claim(w, &layer->skeptic, layer->items);
	json_writer_object_end(w);
}

static void write_layered(struct json_writer *w, const struct read_params *rp,
                          const struct candidate_list *list, const struct layered_result *result)
{
	http_read_write_header(w, rp);
	json_writer_key(w, "candidate_count");
	json_writer_uint(w, list->count);

	json_writer_key(w, "answer");
	if (result->tier_count > 0)
		write_leading_claim(w, &result->tiers[0].skeptic, result->tiers[0].items);
	else
		json_writer_null(w);
	json_writer_key(w, "answer_source_class");
	if (result->tier_count > 0)
		json_writer_cstring(w, source_class_name(result->tiers[0].tier));
	else
		json_writer_null(w);

	json_writer_key(w, "cross_tier_status");
	json_writer_cstring(w, skeptic_status_name(result->overall.status));
	json_writer_key(w, "cross_tier_conflict_score");
	json_writer_double(w, result->overall.conflict_score);

	json_writer_key(w, "tiers");
	json_writer_array_begin(w);
	for (size_t k = 0; k < result->tier_count; k++)
		write_tier(w, &result->tiers[k]);
	json_writer_array_end(w);
	json_writer_object_end(w);
}

void http_handle_layered(struct http_call *call)
{
	struct layered_result result;
	struct candidate_list list;
	struct read_params rp;
	struct http_query q;
	struct json_writer w;
	struct buf body;

	if (http_require_ready(call) == NULL)
		return;
	if (!http_query_parse(call, layered_param_names, &q) ||
	    !http_read_params_parse(call, &q, &rp) ||
	    !http_read_load_candidates(call, &rp, &list)) {
		http_query_free(&q);
		return;
	}

	lens_layered(list.items, list.count, &rp.lens_params, &result);
	http_reply_begin(&body, &w);
	write_layered(&w, &rp, &list, &result);
	http_reply_text(call, 200, &body);

	layered_result_free(&result);
	candidate_list_free(&list);
	http_query_free(&q);
}
