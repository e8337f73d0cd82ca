/* The assertion model: memory management, field rules, wire names and UTF-8 checks.
 * The canonical bytes live in assertion_codec.c, hashing and signatures in
 * assertion_sign.c. */
#include "stemedb/assertion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void assertion_init(struct assertion *a)
{
	memset(a, 0, sizeof(*a));
}

void assertion_free(struct assertion *a)
{
	free(a->subject);
	free(a->predicate);
	free(a->object.text);
	assertion_init(a);
}

/* Copies len bytes into a new NUL-terminated string. Allocation failure aborts, as
 * in buf.c, because no caller could continue without the copy. */
static char *copy_bytes(const char *s, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy == NULL) {
		fprintf(stderr, "assertion: malloc of %zu bytes failed\n", len + 1);
		abort();
	}
	if (len > 0)
		memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

void assertion_set_subject(struct assertion *a, const char *s, size_t len)
{
	free(a->subject);
	a->subject = copy_bytes(s, len);
	a->subject_len = len;
}

void assertion_set_predicate(struct assertion *a, const char *s, size_t len)
{
	free(a->predicate);
	a->predicate = copy_bytes(s, len);
	a->predicate_len = len;
}

void object_set_text(struct object_value *o, enum object_type type, const char *s, size_t len)
{
	free(o->text);
	o->type = type;
	o->text = copy_bytes(s, len);
	o->text_len = len;
}

uint32_t confidence_to_micro(double confidence)
{
	/* The product is rounded to a double before 0.5 is added. The Python reference
	 * implementation does the same, so both agree on halfway cases such as 0.8500005. */
	double scaled = confidence * 1e6;

	return (uint32_t)floor(scaled + 0.5);
}

/* Returns the length of the UTF-8 sequence that starts with lead, or 0 for a byte that
 * cannot start one. Sets *min_code to the smallest code point that needs that length,
 * so that overlong forms can be rejected. */
static size_t utf8_sequence_length(uint8_t lead, uint32_t *code, uint32_t *min_code)
{
	if (lead >= 0xc2 && lead <= 0xdf) {
		*code = lead & 0x1f;
		*min_code = 0x80;
		return 2;
	}
	if (lead >= 0xe0 && lead <= 0xef) {
		*code = lead & 0x0f;
		*min_code = 0x800;
		return 3;
	}
	if (lead >= 0xf0 && lead <= 0xf4) {
		*code = lead & 0x07;
		*min_code = 0x10000;
		return 4;
	}
	return 0;
}

bool utf8_valid(const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;

	while (i < len) {
		uint8_t lead = p[i];

		if (lead == 0)
			return false;
		if (lead < 0x80) {
			i++;
			continue;
		}

		uint32_t code;
		uint32_t min_code;
		size_t n = utf8_sequence_length(lead, &code, &min_code);
		if (n == 0 || n > len - i)
			return false;

		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			code = code << 6 | (p[i + k] & 0x3f);
		}

		if (code < min_code || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* Checks a string field: byte length in [min_len, max_len], valid UTF-8, no NUL. */
static bool validate_string(const char *name, const char *s, size_t len, size_t min_len,
                            size_t max_len, char *message, size_t message_size)
{
	if (len < min_len || len > max_len) {
		snprintf(message, message_size,
		         "%s is %zu bytes long; use %zu to %zu bytes of UTF-8", name, len, min_len,
		         max_len);
		return false;
	}

	if (len > 0 && s == NULL) {
		snprintf(message, message_size, "%s is missing; send a string", name);
		return false;
	}

	if (!utf8_valid(s, len)) {
		snprintf(message, message_size,
		         "%s is not valid UTF-8 or contains a NUL character; send UTF-8 text "
		         "without NUL, overlong forms or surrogates",
		         name);
		return false;
	}
	return true;
}

static bool validate_object(const struct object_value *o, const char **field, char *message,
                            size_t message_size)
{
	switch (o->type) {
	case OBJECT_TEXT:
	case OBJECT_REFERENCE:
		*field = "object.value";
		return validate_string(o->type == OBJECT_TEXT ? "object text" : "object reference",
		                       o->text, o->text_len, 0, STEMEDB_TEXT_MAX, message,
		                       message_size);
	case OBJECT_NUMBER:
		if (isfinite(o->number))
			return true;
		*field = "object.value";
		snprintf(message, message_size,
		         "object number %g is not finite; send a finite JSON number", o->number);
		return false;
	case OBJECT_BOOLEAN:
		return true;
	}

	*field = "object.type";
	snprintf(message, message_size,
	         "object type %d is unknown; use text, number, boolean or reference", (int)o->type);
	return false;
}

/* Checks confidence, the enums and the signature count. */
static bool validate_scalars(const struct assertion *a, const char **field, char *message,
                             size_t message_size)
{
	if (a->confidence_micro > STEMEDB_CONFIDENCE_SCALE) {
		*field = "confidence";
		snprintf(message, message_size,
		         "confidence %u millionths is out of range; use a number from 0.0 to 1.0",
		         a->confidence_micro);
		return false;
	}

	if (a->source_class >= SOURCE_CLASS_COUNT) {
		*field = "source_class";
		snprintf(message, message_size,
		         "source class %u is unknown; use regulatory, clinical, observational, "
		         "expert, community or anecdotal",
		         a->source_class);
		return false;
	}

	if (a->lifecycle >= LIFECYCLE_COUNT) {
		*field = "lifecycle";
		snprintf(message, message_size,
		         "lifecycle %u is unknown; use proposed, under_review, approved, "
		         "deprecated or rejected",
		         a->lifecycle);
		return false;
	}

	if (a->signature_count > STEMEDB_SIGNATURES_MAX) {
		*field = "signatures";
		snprintf(message, message_size,
		         "%zu signatures were given; send at most %d, one per agent",
		         a->signature_count, STEMEDB_SIGNATURES_MAX);
		return false;
	}
	return true;
}

bool assertion_validate(const struct assertion *a, const char **field, char *message,
                        size_t message_size)
{
	const char *unused_field;

	if (field == NULL)
		field = &unused_field;
	*field = "";

	*field = "subject";
	if (!validate_string("subject", a->subject, a->subject_len, 1, STEMEDB_SUBJECT_MAX, message,
	                     message_size))
		return false;

	*field = "predicate";
	if (!validate_string("predicate", a->predicate, a->predicate_len, 1, STEMEDB_PREDICATE_MAX,
	                     message, message_size))
		return false;

	*field = "";
	if (!validate_object(&a->object, field, message, message_size))
		return false;

	*field = "";
	return validate_scalars(a, field, message, message_size);
}

/* Wire names. Each entry lists the canonical lowercase name first and the upstream
 * CamelCase spelling second. */
struct name_entry {
	const char *name;
	const char *camel;
};

static const struct name_entry SOURCE_CLASS_NAMES[SOURCE_CLASS_COUNT] = {
        {"regulatory", "Regulatory"},       {"clinical", "Clinical"},
        {"observational", "Observational"}, {"expert", "Expert"},
        {"community", "Community"},         {"anecdotal", "Anecdotal"},
};

static const struct name_entry LIFECYCLE_NAMES[LIFECYCLE_COUNT] = {
        {"proposed", "Proposed"},     {"under_review", "UnderReview"}, {"approved", "Approved"},
        {"deprecated", "Deprecated"}, {"rejected", "Rejected"},
};

/* Indexed by enum object_type; entry 0 is unused. */
static const struct name_entry OBJECT_TYPE_NAMES[5] = {
        {NULL, NULL},           {"text", "Text"},           {"number", "Number"},
        {"boolean", "Boolean"}, {"reference", "Reference"},
};

/* Accepts the lowercase name, its capitalized form ("Under_review") and the CamelCase
 * spelling. Returns the index or -1. */
static int lookup_name(const struct name_entry *table, size_t count, const char *text)
{
	if (text == NULL || text[0] == '\0')
		return -1;

	for (size_t i = 0; i < count; i++) {
		const char *name = table[i].name;

		if (name == NULL)
			continue;
		if (strcmp(text, name) == 0 || strcmp(text, table[i].camel) == 0)
			return (int)i;
		if (text[0] == table[i].camel[0] && strcmp(text + 1, name + 1) == 0)
			return (int)i;
	}
	return -1;
}

const char *source_class_name(uint8_t source_class)
{
	return source_class < SOURCE_CLASS_COUNT ? SOURCE_CLASS_NAMES[source_class].name : NULL;
}

bool source_class_parse(const char *text, uint8_t *out)
{
	int index = lookup_name(SOURCE_CLASS_NAMES, SOURCE_CLASS_COUNT, text);

	if (index < 0)
		return false;
	*out = (uint8_t)index;
	return true;
}

const char *lifecycle_name(uint8_t lifecycle)
{
	return lifecycle < LIFECYCLE_COUNT ? LIFECYCLE_NAMES[lifecycle].name : NULL;
}

bool lifecycle_parse(const char *text, uint8_t *out)
{
	int index = lookup_name(LIFECYCLE_NAMES, LIFECYCLE_COUNT, text);

	if (index < 0)
		return false;
	*out = (uint8_t)index;
	return true;
}

const char *object_type_name(enum object_type type)
{
	if (type < OBJECT_TEXT || type > OBJECT_REFERENCE)
		return NULL;
	return OBJECT_TYPE_NAMES[type].name;
}

bool object_type_parse(const char *text, enum object_type *out)
{
	int index = lookup_name(OBJECT_TYPE_NAMES, 5, text);

	if (index < 0)
		return false;
	*out = (enum object_type)index;
	return true;
}
