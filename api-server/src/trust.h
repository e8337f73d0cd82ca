#ifndef STEMEDB_TRUST_H
#define STEMEDB_TRUST_H

/* Agent trust from the outcomes that admins record. A new agent has trust 0.5; an
 * accurate outcome adds 0.05 and an inaccurate one subtracts 0.10, clamped to 0..1.
 * Between outcomes and up to the time of reading, the distance from 0.5 halves every
 * 30 days. Trust is recomputed from the stored outcomes at each read, so nothing but
 * the outcomes themselves is stored. Outcomes arrive as trust outcome records through
 * the commit pipeline, which writes their views keys (store_trust_outcome_view_key). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/assertion.h"
#include "store.h"

struct trust_outcome {
	uint64_t timestamp; /* Unix seconds */
	bool accurate;
};

/* Folds outcomes (oldest first) into a trust value at time now (Unix seconds). */
double trust_fold(const struct trust_outcome *outcomes, size_t count, uint64_t now);

struct trust_summary {
	double trust;
	uint64_t accurate;
	uint64_t inaccurate;
	uint64_t last_outcome; /* Unix seconds, 0 without outcomes */
};

/* Reads the outcomes of an agent and folds them at time now. */
enum store_result trust_of_agent(struct store *s, const uint8_t agent[STEMEDB_AGENT_ID_LEN],
                                 uint64_t now, struct trust_summary *out);

/* Folds only the outcomes with a timestamp up to at (Unix seconds) at time at, so the
 * result for a past instant does not change when later outcomes are recorded. */
enum store_result trust_of_agent_at(struct store *s, const uint8_t agent[STEMEDB_AGENT_ID_LEN],
                                    uint64_t at, double *trust);

/* lens_trust_fn over a struct store: the agent's trust now, 0.5 on a storage error. */
double trust_lens_lookup(void *store, const uint8_t agent[STEMEDB_AGENT_ID_LEN]);

#endif
