/* Lens candidates: growable lists and the conversion from an assertion. */

#include "candidate.h"

#include <stdlib.h>
#include <string.h>

void candidate_list_init(struct candidate_list *list)
{
	memset(list, 0, sizeof(*list));
}

void candidate_list_free(struct candidate_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->items[i].object.text);
	}
	free(list->items);
	candidate_list_init(list);
}

struct candidate *candidate_list_push(struct candidate_list *list)
{
	struct candidate *c;

	if (list->count == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 8;
		struct candidate *grown = realloc(list->items, cap * sizeof(*grown));

		/* Allocation failure aborts, as everywhere else in the project (see buf.h). */
		if (grown == NULL) {
			abort();
		}
		list->items = grown;
		list->cap = cap;
	}

	c = &list->items[list->count++];
	memset(c, 0, sizeof(*c));
	return c;
}

static bool agent_seen(const struct candidate *c, const uint8_t agent_id[STEMEDB_AGENT_ID_LEN])
{
	for (size_t i = 0; i < c->agent_count; i++) {
		if (memcmp(c->agents[i], agent_id, STEMEDB_AGENT_ID_LEN) == 0) {
			return true;
		}
	}
	return false;
}

static void copy_object(struct object_value *dst, const struct object_value *src)
{
	*dst = *src;
	dst->text = NULL;
	dst->text_len = 0;
	if (src->type != OBJECT_TEXT && src->type != OBJECT_REFERENCE) {
		return;
	}

	dst->text = malloc(src->text_len + 1);
	if (dst->text == NULL) {
		abort();
	}
	if (src->text_len > 0) {
		memcpy(dst->text, src->text, src->text_len);
	}
	dst->text[src->text_len] = '\0';
	dst->text_len = src->text_len;
}

void candidate_from_assertion(struct candidate *c, const struct assertion *a,
                              const uint8_t hash[STEMEDB_HASH_LEN], const struct hlc_stamp *hlc)
{
	memcpy(c->hash, hash, STEMEDB_HASH_LEN);
	copy_object(&c->object, &a->object);
	c->confidence_micro = a->confidence_micro;
	c->source_class = a->source_class;
	c->lifecycle = a->lifecycle;
	c->has_epoch = a->has_epoch;
	memcpy(c->epoch, a->epoch, STEMEDB_HASH_LEN);
	c->timestamp = a->timestamp;
	c->hlc = *hlc;

	/* Signatures from one agent are rejected before storage, but counting distinct ids
	 * here keeps consensus honest even for records that bypassed that check. */
	c->agent_count = 0;
	for (size_t i = 0; i < a->signature_count && i < STEMEDB_SIGNATURES_MAX; i++) {
		const uint8_t *agent = a->signatures[i].agent_id;

		if (!agent_seen(c, agent)) {
			memcpy(c->agents[c->agent_count++], agent, STEMEDB_AGENT_ID_LEN);
		}
	}
}
