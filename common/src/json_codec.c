/* JSON form of assertions. Input accepts the adjacently tagged object
 * {"type": "number", "value": 1.5} (type names in lowercase or capitalized) and the
 * upstream one-key form {"Number": 1.5}. Output always uses the lowercase names. */
#include "stemedb/json_codec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stemedb/hex.h"

/* Largest integer that a double, and so every JSON client, represents exactly. */
#define JSON_SAFE_INTEGER_MAX 9007199254740992LL

static const char *const ASSERTION_FIELDS[] = {
        "subject",     "predicate",   "object", "confidence", "source_class", "lifecycle",
        "source_hash", "parent_hash", "epoch",  "timestamp",  "signatures",   "hash",
};

static const char *const SIGNATURE_FIELDS[] = {"agent_id", "signature", "timestamp"};

__attribute__((format(printf, 4, 5))) static bool fail(struct codec_error *err, const char *code,
                                                       const char *field, const char *fmt, ...)
{
	va_list args;

	snprintf(err->code, sizeof(err->code), "%s", code);
	snprintf(err->field, sizeof(err->field), "%s", field);
	va_start(args, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, args);
	va_end(args);
	return false;
}

/* Formats a double with the fewest digits that read back as the same value, so that
 * 1.0000001 is not shown as 1. */
static void format_number(double value, char *out, size_t out_size)
{
	for (int precision = 15; precision <= 17; precision++) {
		snprintf(out, out_size, "%.*g", precision, value);
		if (strtod(out, NULL) == value)
			return;
	}
}

static const char *json_type_name(const json_t *value)
{
	switch (json_typeof(value)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown JSON value";
}

static bool is_known(const char *key, const char *const *names, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(key, names[i]) == 0)
			return true;
	}
	return false;
}

/* Rejects the first key of obj that is not in names. prefix is the JSON path of obj
 * ("" at the top level). */
static bool check_known_fields(const json_t *obj, const char *prefix, const char *const *names,
                               size_t count, struct codec_error *err)
{
	const char *key;
	json_t *value;

	json_object_foreach((json_t *)obj, key, value)
	{
		(void)value;
		if (is_known(key, names, count))
			continue;

		char path[64];
		snprintf(path, sizeof(path), "%s%s%.40s", prefix, prefix[0] ? "." : "", key);
		return fail(err, "unknown_field", path,
		            "field \"%.40s\" is unknown; remove it or check its spelling", key);
	}
	return true;
}

/* Reads a required string field with a byte length in [min_len, max_len]. */
static bool get_string(const json_t *obj, const char *key, const char *path, size_t min_len,
                       size_t max_len, const char **text, size_t *len, struct codec_error *err)
{
	const json_t *value = json_object_get(obj, key);

	if (value == NULL)
		return fail(err, "missing_field", path, "%s is missing; send it as a string", path);
	if (!json_is_string(value))
		return fail(err, "invalid_field", path, "%s is %s; send it as a string", path,
		            json_type_name(value));

	*text = json_string_value(value);
	*len = json_string_length(value);
	if (*len < min_len || *len > max_len)
		return fail(err, "out_of_range", path,
		            "%s is %zu bytes long; use %zu to %zu bytes of UTF-8", path, *len,
		            min_len, max_len);
	return true;
}

/* Reads an integer in [0, 2^53]. */
static bool get_timestamp(const json_t *value, const char *path, uint64_t *out,
                          struct codec_error *err)
{
	if (value == NULL)
		return fail(err, "missing_field", path,
		            "%s is missing; send Unix seconds as an integer", path);

	if (json_is_real(value)) {
		char number[32];
		format_number(json_real_value(value), number, sizeof(number));
		return fail(err, "invalid_field", path,
		            "%s %s is not an integer; send whole Unix seconds", path, number);
	}
	if (!json_is_integer(value))
		return fail(err, "invalid_field", path, "%s is %s; send Unix seconds as an integer",
		            path, json_type_name(value));

	json_int_t seconds = json_integer_value(value);
	if (seconds < 0 || seconds > JSON_SAFE_INTEGER_MAX)
		return fail(err, "out_of_range", path,
		            "%s %lld is out of range; use Unix seconds from 0 to %lld", path,
		            (long long)seconds, (long long)JSON_SAFE_INTEGER_MAX);
	*out = (uint64_t)seconds;
	return true;
}

/* Reads a hex string of exactly len bytes. */
static bool decode_hex_value(const json_t *value, const char *path, uint8_t *out, size_t len,
                             struct codec_error *err)
{
	if (!json_is_string(value))
		return fail(err, "invalid_field", path, "%s is %s; send %zu hex characters", path,
		            json_type_name(value), 2 * len);

	const char *text = json_string_value(value);
	if (!hex_decode(text, json_string_length(value), out, len))
		return fail(err, "invalid_field", path,
		            "%s \"%.40s\" is not %zu hex characters; send %zu bytes as hex", path,
		            text, 2 * len, len);
	return true;
}

/* Reads an optional 32-byte hash; absent and null both leave *present false. */
static bool get_optional_hash(const json_t *obj, const char *key, uint8_t *out, bool *present,
                              struct codec_error *err)
{
	const json_t *value = json_object_get(obj, key);

	*present = false;
	if (value == NULL || json_is_null(value))
		return true;

	if (!decode_hex_value(value, key, out, STEMEDB_HASH_LEN, err))
		return false;
	*present = true;
	return true;
}

static bool parse_object_value(const json_t *value, enum object_type type, const char *path,
                               struct object_value *o, struct codec_error *err)
{
	o->type = type;

	switch (type) {
	case OBJECT_TEXT:
	case OBJECT_REFERENCE:
		if (!json_is_string(value))
			return fail(err, "invalid_field", path,
			            "%s is %s; a %s object takes a string", path,
			            json_type_name(value), object_type_name(type));
		if (json_string_length(value) > STEMEDB_TEXT_MAX)
			return fail(err, "out_of_range", path,
			            "%s is %zu bytes long; use at most %d bytes of UTF-8", path,
			            json_string_length(value), STEMEDB_TEXT_MAX);
		object_set_text(o, type, json_string_value(value), json_string_length(value));
		return true;
	case OBJECT_NUMBER:
		if (!json_is_number(value))
			return fail(err, "invalid_field", path,
			            "%s is %s; a number object takes a JSON number", path,
			            json_type_name(value));
		o->number = json_number_value(value);
		return true;
	case OBJECT_BOOLEAN:
		if (!json_is_boolean(value))
			return fail(err, "invalid_field", path,
			            "%s is %s; a boolean object takes true or false", path,
			            json_type_name(value));
		o->boolean = json_is_true(value);
		return true;
	}
	return fail(err, "invalid_field", path, "object type is unknown");
}

static const char OBJECT_TYPE_HINT[] = "use text, number, boolean or reference";

/* {"type": "number", "value": 1.5} */
static bool parse_tagged_object(const json_t *obj, struct object_value *o, struct codec_error *err)
{
	static const char *const fields[] = {"type", "value"};
	const json_t *type_json = json_object_get(obj, "type");
	enum object_type type;

	if (!check_known_fields(obj, "object", fields, 2, err))
		return false;
	if (!json_is_string(type_json))
		return fail(err, "invalid_field", "object.type",
		            "object.type is %s; send a string and %s", json_type_name(type_json),
		            OBJECT_TYPE_HINT);
	if (!object_type_parse(json_string_value(type_json), &type))
		return fail(err, "invalid_field", "object.type",
		            "object.type \"%.40s\" is unknown; %s", json_string_value(type_json),
		            OBJECT_TYPE_HINT);

	const json_t *value = json_object_get(obj, "value");
	if (value == NULL)
		return fail(err, "missing_field", "object.value",
		            "object.value is missing; send the claimed value");
	return parse_object_value(value, type, "object.value", o, err);
}

/* {"Number": 1.5}: exactly one key, which names the type. */
static bool parse_keyed_object(const json_t *obj, struct object_value *o, struct codec_error *err)
{
	const char *key;
	json_t *value;
	enum object_type type;

	if (json_object_size(obj) != 1)
		return fail(err, "invalid_field", "object",
		            "object has %zu fields; send {\"type\": ..., \"value\": ...} or one "
		            "key such as {\"Number\": 1.5}",
		            json_object_size(obj));

	json_object_foreach((json_t *)obj, key, value)
	{
		char path[64];
		snprintf(path, sizeof(path), "object.%.40s", key);
		if (!object_type_parse(key, &type))
			return fail(err, "invalid_field", path,
			            "object type \"%.40s\" is unknown; %s", key, OBJECT_TYPE_HINT);
		return parse_object_value(value, type, path, o, err);
	}
	return false;
}

static bool parse_object(const json_t *obj, struct object_value *o, struct codec_error *err)
{
	const json_t *value = json_object_get(obj, "object");

	if (value == NULL)
		return fail(err, "missing_field", "object",
		            "object is missing; send {\"type\": ..., \"value\": ...}");
	if (!json_is_object(value))
		return fail(err, "invalid_field", "object",
		            "object is %s; send {\"type\": ..., \"value\": ...}",
		            json_type_name(value));

	if (json_object_get(value, "type") != NULL)
		return parse_tagged_object(value, o, err);
	return parse_keyed_object(value, o, err);
}

static bool parse_confidence(const json_t *obj, uint32_t *micro, struct codec_error *err)
{
	static const char hint[] = "use a number from 0.0 to 1.0";
	const json_t *value = json_object_get(obj, "confidence");

	if (value == NULL)
		return fail(err, "missing_field", "confidence", "confidence is missing; %s", hint);
	if (!json_is_number(value))
		return fail(err, "invalid_field", "confidence", "confidence is %s; %s",
		            json_type_name(value), hint);

	double confidence = json_number_value(value);
	if (!(confidence >= 0.0 && confidence <= 1.0)) {
		char number[32];
		format_number(confidence, number, sizeof(number));
		return fail(err, "out_of_range", "confidence", "confidence %s is out of range; %s",
		            number, hint);
	}
	*micro = confidence_to_micro(confidence);
	return true;
}

/* Parses an optional enum name with parse(); absent leaves *out unchanged. */
static bool parse_name(const json_t *obj, const char *key, bool (*parse)(const char *, uint8_t *),
                       const char *choices, uint8_t *out, struct codec_error *err)
{
	const json_t *value = json_object_get(obj, key);

	if (value == NULL)
		return true;
	if (!json_is_string(value))
		return fail(err, "invalid_field", key, "%s is %s; use %s", key,
		            json_type_name(value), choices);
	if (!parse(json_string_value(value), out))
		return fail(err, "invalid_field", key, "%s \"%.40s\" is unknown; use %s", key,
		            json_string_value(value), choices);
	return true;
}

static bool parse_signature(const json_t *value, size_t index, struct signature *s,
                            struct codec_error *err)
{
	char prefix[32];
	char path[64];

	snprintf(prefix, sizeof(prefix), "signatures[%zu]", index);
	if (!json_is_object(value))
		return fail(err, "invalid_field", prefix,
		            "%s is %s; send {\"agent_id\", \"signature\", \"timestamp\"}", prefix,
		            json_type_name(value));
	if (!check_known_fields(value, prefix, SIGNATURE_FIELDS, 3, err))
		return false;

	snprintf(path, sizeof(path), "%s.agent_id", prefix);
	const json_t *agent_id = json_object_get(value, "agent_id");
	if (agent_id == NULL)
		return fail(err, "missing_field", path,
		            "%s is missing; send the Ed25519 public key as 64 hex characters",
		            path);
	if (!decode_hex_value(agent_id, path, s->agent_id, STEMEDB_AGENT_ID_LEN, err))
		return false;

	snprintf(path, sizeof(path), "%s.signature", prefix);
	const json_t *signature = json_object_get(value, "signature");
	if (signature == NULL)
		return fail(err, "missing_field", path,
		            "%s is missing; send the Ed25519 signature as 128 hex characters",
		            path);
	if (!decode_hex_value(signature, path, s->signature, STEMEDB_SIGNATURE_LEN, err))
		return false;

	snprintf(path, sizeof(path), "%s.timestamp", prefix);
	return get_timestamp(json_object_get(value, "timestamp"), path, &s->timestamp, err);
}

static bool parse_signatures(const json_t *obj, struct assertion *a, struct codec_error *err)
{
	const json_t *list = json_object_get(obj, "signatures");

	if (list == NULL)
		return fail(err, "missing_field", "signatures",
		            "signatures is missing; send 1 to %d signatures",
		            STEMEDB_SIGNATURES_MAX);
	if (!json_is_array(list))
		return fail(err, "invalid_field", "signatures",
		            "signatures is %s; send an array of 1 to %d signatures",
		            json_type_name(list), STEMEDB_SIGNATURES_MAX);

	size_t count = json_array_size(list);
	if (count < 1 || count > STEMEDB_SIGNATURES_MAX)
		return fail(err, "out_of_range", "signatures",
		            "signatures has %zu entries; send 1 to %d, one per agent", count,
		            STEMEDB_SIGNATURES_MAX);

	for (size_t i = 0; i < count; i++) {
		if (!parse_signature(json_array_get(list, i), i, &a->signatures[i], err))
			return false;
	}
	a->signature_count = count;
	return true;
}

static bool parse_text_fields(const json_t *obj, struct assertion *a, struct codec_error *err)
{
	const char *text;
	size_t len;

	if (!get_string(obj, "subject", "subject", 1, STEMEDB_SUBJECT_MAX, &text, &len, err))
		return false;
	assertion_set_subject(a, text, len);

	if (!get_string(obj, "predicate", "predicate", 1, STEMEDB_PREDICATE_MAX, &text, &len, err))
		return false;
	assertion_set_predicate(a, text, len);

	return parse_object(obj, &a->object, err);
}

static bool parse_metadata(const json_t *obj, struct assertion *a, struct codec_error *err)
{
	bool present;

	a->source_class = SOURCE_ANECDOTAL;
	if (!parse_name(obj, "source_class", source_class_parse,
	                "regulatory, clinical, observational, expert, community or anecdotal",
	                &a->source_class, err))
		return false;

	a->lifecycle = LIFECYCLE_PROPOSED;
	if (!parse_name(obj, "lifecycle", lifecycle_parse,
	                "proposed, under_review, approved, deprecated or rejected", &a->lifecycle,
	                err))
		return false;

	memset(a->source_hash, 0, sizeof(a->source_hash));
	if (!get_optional_hash(obj, "source_hash", a->source_hash, &present, err))
		return false;
	if (!get_optional_hash(obj, "parent_hash", a->parent_hash, &a->has_parent, err))
		return false;
	return get_optional_hash(obj, "epoch", a->epoch, &a->has_epoch, err);
}

bool assertion_from_json(const json_t *obj, struct assertion *a, struct codec_error *err)
{
	if (!json_is_object(obj))
		return fail(err, "invalid_field", "", "the assertion is %s; send a JSON object",
		            json_type_name(obj));
	if (!check_known_fields(obj, "", ASSERTION_FIELDS,
	                        sizeof(ASSERTION_FIELDS) / sizeof(ASSERTION_FIELDS[0]), err))
		return false;

	if (!parse_text_fields(obj, a, err) || !parse_confidence(obj, &a->confidence_micro, err))
		return false;
	if (!parse_metadata(obj, a, err))
		return false;
	if (!get_timestamp(json_object_get(obj, "timestamp"), "timestamp", &a->timestamp, err))
		return false;
	if (!parse_signatures(obj, a, err))
		return false;

	/* The remaining rules (UTF-8 without NUL) are the model's own. */
	const char *field = "";
	if (!assertion_validate(a, &field, err->message, sizeof(err->message))) {
		snprintf(err->code, sizeof(err->code), "invalid_field");
		snprintf(err->field, sizeof(err->field), "%s", field);
		return false;
	}
	return true;
}

json_t *object_value_to_json(const struct object_value *o)
{
	json_t *value = NULL;

	switch (o->type) {
	case OBJECT_TEXT:
	case OBJECT_REFERENCE:
		value = json_stringn(o->text ? o->text : "", o->text_len);
		break;
	case OBJECT_NUMBER:
		value = json_real(o->number);
		break;
	case OBJECT_BOOLEAN:
		value = json_boolean(o->boolean);
		break;
	}
	if (value == NULL)
		return NULL;

	return json_pack("{s:s, s:o}", "type", object_type_name(o->type), "value", value);
}

static json_t *hex_to_json(const uint8_t *bytes, size_t len)
{
	char text[2 * STEMEDB_SIGNATURE_LEN + 1];

	hex_encode(bytes, len, text);
	return json_string(text);
}

static json_t *signatures_to_json(const struct assertion *a)
{
	json_t *list = json_array();

	for (size_t i = 0; list != NULL && i < a->signature_count; i++) {
		const struct signature *s = &a->signatures[i];
		json_t *item =
		        json_pack("{s:o, s:o, s:I}", "agent_id",
		                  hex_to_json(s->agent_id, STEMEDB_AGENT_ID_LEN), "signature",
		                  hex_to_json(s->signature, STEMEDB_SIGNATURE_LEN), "timestamp",
		                  (json_int_t)s->timestamp);

		if (item == NULL || json_array_append_new(list, item) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

json_t *assertion_to_json(const struct assertion *a, const uint8_t hash[STEMEDB_HASH_LEN])
{
	json_t *obj = json_pack("{s:o, s:s%, s:s%, s:o, s:f, s:s, s:s, s:o}", "hash",
	                        hex_to_json(hash, STEMEDB_HASH_LEN), "subject", a->subject,
	                        a->subject_len, "predicate", a->predicate, a->predicate_len,
	                        "object", object_value_to_json(&a->object), "confidence",
	                        (double)a->confidence_micro / STEMEDB_CONFIDENCE_SCALE,
	                        "source_class", source_class_name(a->source_class), "lifecycle",
	                        lifecycle_name(a->lifecycle), "source_hash",
	                        hex_to_json(a->source_hash, STEMEDB_HASH_LEN));
	if (obj == NULL)
		return NULL;

	int rc = 0;
	if (a->has_parent)
		rc |= json_object_set_new(obj, "parent_hash",
		                          hex_to_json(a->parent_hash, STEMEDB_HASH_LEN));
	if (a->has_epoch)
		rc |= json_object_set_new(obj, "epoch", hex_to_json(a->epoch, STEMEDB_HASH_LEN));
	rc |= json_object_set_new(obj, "timestamp", json_integer((json_int_t)a->timestamp));
	rc |= json_object_set_new(obj, "signatures", signatures_to_json(a));

	if (rc != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}
