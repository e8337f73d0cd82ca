#ifndef STEMEDB_CANDIDATE_H
#define STEMEDB_CANDIDATE_H

/* A lens candidate: the part of an assertion that lenses read, stored in the
 * subject/predicate index value so that a query needs one prefix scan and no
 * point lookups. */

#include <stddef.h>
#include <stdint.h>

#include "stemedb/assertion.h"

struct candidate {
	uint8_t hash[STEMEDB_HASH_LEN];
	struct object_value object; /* text owned by the candidate */
	uint32_t confidence_micro;
	uint8_t source_class;
	uint8_t lifecycle;
	bool has_epoch;
	uint8_t epoch[STEMEDB_HASH_LEN];
	uint64_t timestamp;
	struct hlc_stamp hlc;
	size_t agent_count; /* distinct signers */
	uint8_t agents[STEMEDB_SIGNATURES_MAX][STEMEDB_AGENT_ID_LEN];
};

struct candidate_list {
	struct candidate *items;
	size_t count;
	size_t cap;
};

void candidate_list_init(struct candidate_list *list);
void candidate_list_free(struct candidate_list *list);
/* Appends a zeroed candidate and returns it. */
struct candidate *candidate_list_push(struct candidate_list *list);

/* Fills c from an assertion and its hash and HLC stamp (copies the object text). */
void candidate_from_assertion(struct candidate *c, const struct assertion *a,
                              const uint8_t hash[STEMEDB_HASH_LEN], const struct hlc_stamp *hlc);

#endif
