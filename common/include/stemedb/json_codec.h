#ifndef STEMEDB_JSON_CODEC_H
#define STEMEDB_JSON_CODEC_H

/* JSON form of assertions (jansson). Field names and the accepted upstream spellings
 * are listed in docs/api.md. */

#include <jansson.h>
#include <stdbool.h>

#include "stemedb/assertion.h"

/* A rejected input: machine-readable code (snake_case), the JSON path of the field at
 * fault (empty when none) and a sentence that names the value and the fix. */
struct codec_error {
	char code[48];
	char field[64];
	char message[256];
};

/* Parses one assertion object into a (initialized by the caller). Checks types and
 * every field rule (assertion_validate) but not signatures. Unknown top-level fields
 * are rejected so that a misspelled optional field is not silently dropped, except
 * "hash", which clients may echo back. On failure fills err (code "invalid_field",
 * "missing_field", "out_of_range" or "unknown_field"). */
bool assertion_from_json(const json_t *obj, struct assertion *a, struct codec_error *err);

/* Builds the JSON object of an assertion, including "hash" and "signatures". */
json_t *assertion_to_json(const struct assertion *a, const uint8_t hash[STEMEDB_HASH_LEN]);

/* Builds {"type": ..., "value": ...}. */
json_t *object_value_to_json(const struct object_value *o);

#endif
