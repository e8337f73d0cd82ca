#ifndef STEMEDB_RECORD_JSON_H
#define STEMEDB_RECORD_JSON_H

/* JSON form of the records in records.h (jansson). docs/api.md lists the fields. */

#include <jansson.h>
#include <stdbool.h>

#include "stemedb/json_codec.h"
#include "stemedb/records.h"

/* Parses obj as a record of r->type (r initialized with that type) and checks
 * record_validate. Votes take one "signature" signed by "voter"; co-signatures one
 * "signature" by "agent_id"; the other types a "signatures" array of
 * {"agent_id", "signature"}. With require_signatures false the signature fields are
 * optional (test vectors). Unknown fields are rejected. */
bool record_from_json(const json_t *obj, bool require_signatures, struct record *r,
                      struct codec_error *err);

/* Builds the JSON object of a record with "id", its fields and its signers. Source
 * content is included only when with_content is true. */
json_t *record_to_json(const struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                       bool with_content);

#endif
