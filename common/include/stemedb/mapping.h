#ifndef STEMEDB_MAPPING_H
#define STEMEDB_MAPPING_H

/* Import mappings: a JSON document that tells where the records of a data file are,
 * how to build a subject from each record and which record fields become which
 * predicates. docs/importer.md documents the format; stemedb-ctl import uses it. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "stemedb/assertion.h"

enum mapping_result {
	MAPPING_OK = 0,
	MAPPING_SKIPPED, /* the field is missing, null, an empty string or an empty array */
	MAPPING_INVALID, /* the field is present but cannot become a value of the type */
};

/* Text transforms, applied in this order: trim, then lowercase or uppercase. */
#define MAPPING_TRIM      0x1u
#define MAPPING_LOWERCASE 0x2u
#define MAPPING_UPPERCASE 0x4u

struct mapping_predicate {
	const char *predicate;
	const char *field; /* dotted path with [N] indexes, e.g. "capital[0]" */
	enum object_type type;
	double confidence;
	unsigned transforms;
	bool measurement;        /* number_format "measurement": "1.00794(4)", "[209]", [209] */
	const json_t *value_map; /* text replacements, borrowed from the mapping document */
};

/* A name-to-code table read from a second file: each record's `from` field is looked
 * up (trimmed, ASCII case folded) and the result is available as field `as`. */
struct mapping_lookup {
	json_t *table; /* folded key -> string */
	const char *from;
	const char *as;
};

struct mapping {
	json_t *doc;              /* the parsed mapping file, which owns every string below */
	const char *records_path; /* NULL or "" for the document root */
	const char *key_field;    /* field name for the key of object-form records */
	int jsonl;                /* -1 decide by extension, 0 no, 1 yes */
	const char *subject_template;
	unsigned subject_transforms;
	bool has_lookup;
	struct mapping_lookup lookup;
	bool has_timestamp;
	uint64_t timestamp;
	size_t predicate_count;
	struct mapping_predicate *predicates;
};

/* Loads and checks the mapping file at path; a lookup file is resolved relative to the
 * mapping file's folder. On failure writes a sentence naming the value and the fix
 * into err and returns false; m then needs no mapping_free. */
bool mapping_load(const char *path, struct mapping *m, char *err, size_t err_size);
void mapping_free(struct mapping *m);

/* Reads the data file (JSON, or JSON Lines when jsonl is true) and returns a new
 * array of records selected by m, or NULL with err filled. Object-form records are
 * copies that carry their key in m->key_field. */
json_t *mapping_read_records(const struct mapping *m, const char *data_path, bool jsonl, char *err,
                             size_t err_size);

/* Resolves a dotted path ("a.b[0].c") in a record. Returns NULL when a step is
 * missing or the path is malformed. An index on an object selects its N-th member. */
const json_t *mapping_resolve_path(const json_t *record, const char *path);

/* Builds the subject from the template. *out is malloc'ed on MAPPING_OK. */
enum mapping_result mapping_subject(const struct mapping *m, const json_t *record, char **out,
                                    char *err, size_t err_size);

/* Converts the predicate's field of record into out (initialized by the caller and
 * released with free(out->text)). */
enum mapping_result mapping_value(const struct mapping *m, const struct mapping_predicate *p,
                                  const json_t *record, struct object_value *out, char *err,
                                  size_t err_size);

/* Parses a decimal number such as "-12.5" or "1e3", with optional surrounding ASCII
 * whitespace. With measurement, also accepts a trailing concise uncertainty ("(4)" in
 * "1.00794(4)") and enclosing brackets ("[209]"). Returns false unless the whole text
 * is one finite number. */
bool mapping_parse_number(const char *text, bool measurement, double *out);

/* Parses a transform list (["trim", "uppercase"]) into MAPPING_* flags. */
bool mapping_parse_transforms(const json_t *list, unsigned *out, char *err, size_t err_size);

#endif
