/* JSON parsing and output of votes, epochs, co-signatures, sources, aliases and trust
 * outcomes. Trust outcomes reach stemedb-api over IPC only; their JSON form serves the
 * test vectors and tools. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stemedb/hex.h"
#include "stemedb/record_json.h"

__attribute__((format(printf, 4, 5))) static bool fail(struct codec_error *err, const char *code,
                                                       const char *field, const char *fmt, ...)
{
	va_list ap;

	snprintf(err->code, sizeof(err->code), "%s", code);
	snprintf(err->field, sizeof(err->field), "%s", field);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return false;
}

static const char *const VOTE_FIELDS[] = {"assertion_hash", "voter",     "weight",
                                          "timestamp",      "signature", NULL};
static const char *const EPOCH_FIELDS[] = {"name",       "description", "supersedes", "timestamp",
                                           "signatures", "id",          NULL};
static const char *const COSIGNATURE_FIELDS[] = {"assertion_hash", "agent_id", "timestamp",
                                                 "signature", NULL};
static const char *const SOURCE_FIELDS[] = {"uri",       "title",      "source_class", "content",
                                            "timestamp", "signatures", "id",           NULL};
static const char *const ALIAS_FIELDS[] = {"subject_a",  "subject_b", "timestamp",
                                           "signatures", "id",        NULL};

static const char *const TRUST_OUTCOME_FIELDS[] = {"agent_id",   "outcome", "timestamp", "note",
                                                   "signatures", "id",      NULL};

static const char *const *known_fields(uint8_t type)
{
	switch (type) {
	case STEMEDB_RECORD_VOTE:
		return VOTE_FIELDS;
	case STEMEDB_RECORD_EPOCH:
		return EPOCH_FIELDS;
	case STEMEDB_RECORD_COSIGNATURE:
		return COSIGNATURE_FIELDS;
	case STEMEDB_RECORD_SOURCE:
		return SOURCE_FIELDS;
	case STEMEDB_RECORD_TRUST_OUTCOME:
		return TRUST_OUTCOME_FIELDS;
	default:
		return ALIAS_FIELDS;
	}
}

static bool check_known(const json_t *obj, uint8_t type, struct codec_error *err)
{
	const char *key;
	const json_t *value;

	json_object_foreach((json_t *)obj, key, value)
	{
		bool known = false;

		for (const char *const *name = known_fields(type); *name != NULL; name++)
			known = known || strcmp(*name, key) == 0;
		if (!known)
			return fail(err, "unknown_field", key,
			            "Field '%.64s' is not part of a %s record; remove it.", key,
			            record_type_name(type));
	}
	return true;
}

static bool get_hex(const json_t *obj, const char *key, uint8_t *out, size_t len, bool required,
                    bool *present, struct codec_error *err)
{
	const json_t *value = json_object_get(obj, key);

	*present = value != NULL && !json_is_null(value);
	if (!*present)
		return required ? fail(err, "missing_field", key,
		                       "Field '%s' is missing; send %zu hex characters.", key,
		                       2 * len)
		                : true;
	if (!json_is_string(value) ||
	    !hex_decode(json_string_value(value), json_string_length(value), out, len))
		return fail(err, "invalid_field", key,
		            "Field '%s' is not %zu hex characters; send "
		            "a lowercase hex string of that length.",
		            key, 2 * len);
	return true;
}

static bool get_text(const json_t *obj, const char *key, bool required, char **dst, size_t *dst_len,
                     struct codec_error *err)
{
	const json_t *value = json_object_get(obj, key);

	if (value == NULL)
		return required ? fail(err, "missing_field", key,
		                       "Field '%s' is missing; send it as a JSON string.", key)
		                : true;
	if (!json_is_string(value))
		return fail(err, "invalid_field", key, "Field '%s' is not a string; send text.",
		            key);
	record_set_string(dst, dst_len, json_string_value(value), json_string_length(value));
	return true;
}

static bool get_timestamp(const json_t *obj, uint64_t *out, struct codec_error *err)
{
	const json_t *value = json_object_get(obj, "timestamp");

	if (value == NULL)
		return fail(err, "missing_field", "timestamp",
		            "Field 'timestamp' is missing; send Unix seconds as an integer.");
	if (!json_is_integer(value) || json_integer_value(value) < 0)
		return fail(err, "invalid_field", "timestamp",
		            "Field 'timestamp' is not a non-negative integer; send Unix seconds.");
	*out = (uint64_t)json_integer_value(value);
	return true;
}

static bool parse_vote(const json_t *obj, struct vote *v, struct codec_error *err)
{
	const json_t *weight = json_object_get(obj, "weight");
	bool present;

	if (!get_hex(obj, "assertion_hash", v->assertion_hash, STEMEDB_HASH_LEN, true, &present,
	             err) ||
	    !get_hex(obj, "voter", v->voter, STEMEDB_AGENT_ID_LEN, true, &present, err))
		return false;
	if (weight == NULL)
		return fail(err, "missing_field", "weight",
		            "Field 'weight' is missing; send a number from -1.0 to 1.0.");
	if (!json_is_number(weight))
		return fail(err, "invalid_field", "weight",
		            "Field 'weight' is not a number; send a number from -1.0 to 1.0.");
	if (!(json_number_value(weight) >= -1.0 && json_number_value(weight) <= 1.0))
		return fail(err, "out_of_range", "weight",
		            "weight %g is out of range; send a number from -1.0 to 1.0.",
		            json_number_value(weight));
	v->weight_micro = (int32_t)floor(json_number_value(weight) * 1e6 + 0.5);
	return get_timestamp(obj, &v->timestamp, err);
}

static bool parse_epoch(const json_t *obj, struct epoch *e, struct codec_error *err)
{
	if (!get_text(obj, "name", true, &e->name, &e->name_len, err) ||
	    !get_text(obj, "description", false, &e->description, &e->description_len, err) ||
	    !get_hex(obj, "supersedes", e->supersedes, STEMEDB_HASH_LEN, false, &e->has_supersedes,
	             err))
		return false;
	if (e->description == NULL)
		record_set_string(&e->description, &e->description_len, "", 0);
	return get_timestamp(obj, &e->timestamp, err);
}

static bool parse_source(const json_t *obj, struct source_record *s, struct codec_error *err)
{
	const json_t *cls = json_object_get(obj, "source_class");

	s->source_class = SOURCE_ANECDOTAL;
	if (cls != NULL &&
	    (!json_is_string(cls) || !source_class_parse(json_string_value(cls), &s->source_class)))
		return fail(err, "invalid_field", "source_class",
		            "Field 'source_class' is not a source class; use regulatory, clinical, "
		            "observational, expert, community or anecdotal.");
	if (!get_text(obj, "uri", true, &s->uri, &s->uri_len, err) ||
	    !get_text(obj, "title", false, &s->title, &s->title_len, err) ||
	    !get_text(obj, "content", false, &s->content, &s->content_len, err))
		return false;
	s->has_content = s->content != NULL;
	if (s->title == NULL)
		record_set_string(&s->title, &s->title_len, "", 0);
	return get_timestamp(obj, &s->timestamp, err);
}

static bool parse_trust_outcome(const json_t *obj, struct trust_outcome_record *t,
                                struct codec_error *err)
{
	const char *outcome = json_string_value(json_object_get(obj, "outcome"));
	bool present;

	if (!get_hex(obj, "agent_id", t->agent_id, STEMEDB_AGENT_ID_LEN, true, &present, err))
		return false;
	if (outcome == NULL ||
	    (strcmp(outcome, "accurate") != 0 && strcmp(outcome, "inaccurate") != 0))
		return fail(err, "invalid_field", "outcome",
		            "Field 'outcome' must be \"accurate\" or \"inaccurate\".");
	t->accurate = strcmp(outcome, "accurate") == 0;
	if (!get_text(obj, "note", false, &t->note, &t->note_len, err))
		return false;
	if (t->note == NULL)
		record_set_string(&t->note, &t->note_len, "", 0);
	return get_timestamp(obj, &t->timestamp, err);
}

static bool parse_single_signature(const json_t *obj, const uint8_t *agent_id,
                                   bool require_signatures, struct record *r,
                                   struct codec_error *err)
{
	bool present;

	if (!get_hex(obj, "signature", r->signers[0].signature, STEMEDB_SIGNATURE_LEN,
	             require_signatures, &present, err))
		return false;
	if (present) {
		memcpy(r->signers[0].agent_id, agent_id, STEMEDB_AGENT_ID_LEN);
		r->signer_count = 1;
	}
	return true;
}

static bool parse_signers(const json_t *obj, bool require_signatures, struct record *r,
                          struct codec_error *err)
{
	const json_t *list = json_object_get(obj, "signatures");
	size_t index;
	const json_t *item;

	if (list == NULL && !require_signatures)
		return true;
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > STEMEDB_RECORD_SIGNERS_MAX)
		return fail(err, list == NULL ? "missing_field" : "invalid_field", "signatures",
		            "Field 'signatures' must be an array of 1 to 16 {\"agent_id\", "
		            "\"signature\"} objects.");
	json_array_foreach(list, index, item)
	{
		bool present;

		if (!json_is_object(item) ||
		    !get_hex(item, "agent_id", r->signers[index].agent_id, STEMEDB_AGENT_ID_LEN,
		             true, &present, err) ||
		    !get_hex(item, "signature", r->signers[index].signature, STEMEDB_SIGNATURE_LEN,
		             true, &present, err)) {
			snprintf(err->field, sizeof(err->field), "signatures[%zu]", index);
			if (err->code[0] == '\0')
				fail(err, "invalid_field", "signatures",
				     "Signature %zu is not an "
				     "object; send {\"agent_id\", \"signature\"}.",
				     index);
			return false;
		}
	}
	r->signer_count = json_array_size(list);
	return true;
}

static bool parse_body(const json_t *obj, bool require_signatures, struct record *r,
                       struct codec_error *err)
{
	bool present;

	switch (r->type) {
	case STEMEDB_RECORD_VOTE:
		return parse_vote(obj, &r->u.vote, err) &&
		       parse_single_signature(obj, r->u.vote.voter, require_signatures, r, err);
	case STEMEDB_RECORD_COSIGNATURE:
		return get_hex(obj, "assertion_hash", r->u.cosignature.assertion_hash,
		               STEMEDB_HASH_LEN, true, &present, err) &&
		       get_hex(obj, "agent_id", r->u.cosignature.agent_id, STEMEDB_AGENT_ID_LEN,
		               true, &present, err) &&
		       get_timestamp(obj, &r->u.cosignature.timestamp, err) &&
		       parse_single_signature(obj, r->u.cosignature.agent_id, require_signatures, r,
		                              err);
	case STEMEDB_RECORD_EPOCH:
		return parse_epoch(obj, &r->u.epoch, err) &&
		       parse_signers(obj, require_signatures, r, err);
	case STEMEDB_RECORD_SOURCE:
		return parse_source(obj, &r->u.source, err) &&
		       parse_signers(obj, require_signatures, r, err);
	case STEMEDB_RECORD_TRUST_OUTCOME:
		return parse_trust_outcome(obj, &r->u.trust_outcome, err) &&
		       parse_signers(obj, require_signatures, r, err);
	default:
		return get_text(obj, "subject_a", true, &r->u.alias.subject_a,
		                &r->u.alias.subject_a_len, err) &&
		       get_text(obj, "subject_b", true, &r->u.alias.subject_b,
		                &r->u.alias.subject_b_len, err) &&
		       get_timestamp(obj, &r->u.alias.timestamp, err) &&
		       parse_signers(obj, require_signatures, r, err);
	}
}

bool record_from_json(const json_t *obj, bool require_signatures, struct record *r,
                      struct codec_error *err)
{
	const char *field = "";

	memset(err, 0, sizeof(*err));
	if (!json_is_object(obj))
		return fail(err, "invalid_field", "",
		            "The %s is not a JSON object; send an object.",
		            record_type_name(r->type));
	if (!check_known(obj, r->type, err) || !parse_body(obj, require_signatures, r, err))
		return false;
	if (!record_validate(r, &field, err->message, sizeof(err->message))) {
		snprintf(err->code, sizeof(err->code), "out_of_range");
		snprintf(err->field, sizeof(err->field), "%s", field);
		return false;
	}
	return true;
}

static json_t *hex_json(const uint8_t *bytes, size_t len)
{
	char text[2 * STEMEDB_SIGNATURE_LEN + 1];

	hex_encode(bytes, len, text);
	return json_string(text);
}

static void add_fields(json_t *o, const struct record *r, bool with_content)
{
	switch (r->type) {
	case STEMEDB_RECORD_VOTE:
		json_object_set_new(o, "assertion_hash", hex_json(r->u.vote.assertion_hash, 32));
		json_object_set_new(o, "voter", hex_json(r->u.vote.voter, 32));
		json_object_set_new(o, "weight", json_real(r->u.vote.weight_micro / 1e6));
		json_object_set_new(o, "timestamp", json_integer((json_int_t)r->u.vote.timestamp));
		break;
	case STEMEDB_RECORD_EPOCH:
		json_object_set_new(o, "name", json_stringn(r->u.epoch.name, r->u.epoch.name_len));
		json_object_set_new(
		        o, "description",
		        json_stringn(r->u.epoch.description, r->u.epoch.description_len));
		json_object_set_new(o, "supersedes",
		                    r->u.epoch.has_supersedes ? hex_json(r->u.epoch.supersedes, 32)
		                                              : json_null());
		json_object_set_new(o, "timestamp", json_integer((json_int_t)r->u.epoch.timestamp));
		break;
	case STEMEDB_RECORD_COSIGNATURE:
		json_object_set_new(o, "assertion_hash",
		                    hex_json(r->u.cosignature.assertion_hash, 32));
		json_object_set_new(o, "agent_id", hex_json(r->u.cosignature.agent_id, 32));
		json_object_set_new(o, "timestamp",
		                    json_integer((json_int_t)r->u.cosignature.timestamp));
		break;
	case STEMEDB_RECORD_SOURCE:
		json_object_set_new(o, "uri", json_stringn(r->u.source.uri, r->u.source.uri_len));
		json_object_set_new(o, "title",
		                    json_stringn(r->u.source.title, r->u.source.title_len));
		json_object_set_new(o, "source_class",
		                    json_string(source_class_name(r->u.source.source_class)));
		json_object_set_new(o, "content_bytes",
		                    json_integer((json_int_t)r->u.source.content_len));
		if (with_content && r->u.source.has_content)
			json_object_set_new(
			        o, "content",
			        json_stringn(r->u.source.content, r->u.source.content_len));
		json_object_set_new(o, "timestamp",
		                    json_integer((json_int_t)r->u.source.timestamp));
		break;
	case STEMEDB_RECORD_TRUST_OUTCOME:
		json_object_set_new(o, "agent_id", hex_json(r->u.trust_outcome.agent_id, 32));
		json_object_set_new(
		        o, "outcome",
		        json_string(r->u.trust_outcome.accurate ? "accurate" : "inaccurate"));
		json_object_set_new(o, "timestamp",
		                    json_integer((json_int_t)r->u.trust_outcome.timestamp));
		json_object_set_new(
		        o, "note",
		        json_stringn(r->u.trust_outcome.note, r->u.trust_outcome.note_len));
		break;
	default:
		json_object_set_new(o, "subject_a",
		                    json_stringn(r->u.alias.subject_a, r->u.alias.subject_a_len));
		json_object_set_new(o, "subject_b",
		                    json_stringn(r->u.alias.subject_b, r->u.alias.subject_b_len));
		json_object_set_new(o, "timestamp", json_integer((json_int_t)r->u.alias.timestamp));
		break;
	}
}

json_t *record_to_json(const struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                       bool with_content)
{
	json_t *o = json_object();
	json_t *signers = json_array();

	json_object_set_new(o, "id", hex_json(id, STEMEDB_HASH_LEN));
	add_fields(o, r, with_content);
	for (size_t i = 0; i < r->signer_count; i++) {
		json_t *s = json_object();

		json_object_set_new(s, "agent_id", hex_json(r->signers[i].agent_id, 32));
		json_object_set_new(s, "signature", hex_json(r->signers[i].signature, 64));
		json_array_append_new(signers, s);
	}
	json_object_set_new(o, "signatures", signers);
	return o;
}
