#ifndef STEMEDB_HTTP_RECORDS_H
#define STEMEDB_HTTP_RECORDS_H

/* Read-side helpers of the signed records that the query handlers use. */

#include <stdint.h>

#include "stemedb/assertion.h"

/* lens_vote_fn over a struct store (ctx): the sum of the counted vote weights on the
 * assertion, as a number from -1 per voter to 1 per voter. */
double http_records_vote_sum(void *ctx, const uint8_t hash[STEMEDB_HASH_LEN]);

#endif
