/* Import mappings: loading and checking the mapping document, selecting records from a
 * data file, and turning one record into a subject and typed values. The format is
 * documented in docs/importer.md. Nothing here touches the network or signs. */

#include "stemedb/mapping.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAPPING_DEFAULT_CONFIDENCE 0.9
#define MAPPING_DEFAULT_KEY_FIELD  "_key"

static const char *const top_level_keys[] = {
        "description", "records",   "key_field",  "jsonl",      "subject", "subject_transform",
        "lookup",      "timestamp", "confidence", "predicates", NULL,
};
static const char *const predicate_keys[] = {
        "predicate", "field", "type", "confidence", "transform", "number_format", "value_map", NULL,
};
static const char *const lookup_keys[] = {
        "file", "records", "match", "value", "from", "as", NULL,
};

static bool key_allowed(const char *key, const char *const *allowed)
{
	for (size_t i = 0; allowed[i] != NULL; i++) {
		if (strcmp(key, allowed[i]) == 0)
			return true;
	}
	return false;
}

/* Rejects unknown keys so that a misspelled option is reported instead of ignored. */
static bool check_keys(const json_t *obj, const char *const *allowed, const char *where, char *err,
                       size_t err_size)
{
	const char *key;
	json_t *value;

	json_object_foreach((json_t *)obj, key, value)
	{
		(void)value;
		if (!key_allowed(key, allowed)) {
			snprintf(err, err_size,
			         "unknown key \"%s\" in %s; remove it or fix its spelling "
			         "(docs/importer.md lists the keys)",
			         key, where);
			return false;
		}
	}
	return true;
}

/* Copies text with leading and trailing ASCII whitespace removed. */
static char *trimmed_copy(const char *text, size_t len)
{
	while (len > 0 && isspace((unsigned char)text[0])) {
		text++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	return strndup(text, len);
}

static char *apply_transforms(const char *text, size_t len, unsigned transforms)
{
	char *out = (transforms & MAPPING_TRIM) ? trimmed_copy(text, len) : strndup(text, len);

	if (out == NULL)
		abort();
	for (char *c = out; *c != '\0'; c++) {
		if (transforms & MAPPING_LOWERCASE)
			*c = (char)tolower((unsigned char)*c);
		else if (transforms & MAPPING_UPPERCASE)
			*c = (char)toupper((unsigned char)*c);
	}
	return out;
}

/* Folds a lookup key: trimmed and ASCII lowercase, so "Bolivia " matches "bolivia". */
static char *fold_key(const char *text)
{
	return apply_transforms(text, strlen(text), MAPPING_TRIM | MAPPING_LOWERCASE);
}

bool mapping_parse_transforms(const json_t *list, unsigned *out, char *err, size_t err_size)
{
	size_t i;
	json_t *item;

	*out = 0;
	if (list == NULL)
		return true;
	if (!json_is_array(list)) {
		snprintf(err, err_size,
		         "a transform must be a list such as [\"trim\", \"uppercase\"]");
		return false;
	}
	json_array_foreach(list, i, item)
	{
		const char *name = json_string_value(item);

		if (name != NULL && strcmp(name, "trim") == 0)
			*out |= MAPPING_TRIM;
		else if (name != NULL && strcmp(name, "lowercase") == 0)
			*out |= MAPPING_LOWERCASE;
		else if (name != NULL && strcmp(name, "uppercase") == 0)
			*out |= MAPPING_UPPERCASE;
		else {
			snprintf(err, err_size,
			         "transform %zu is not one of \"trim\", \"lowercase\", "
			         "\"uppercase\"",
			         i);
			return false;
		}
	}
	if ((*out & MAPPING_LOWERCASE) && (*out & MAPPING_UPPERCASE)) {
		snprintf(err, err_size,
		         "transforms \"lowercase\" and \"uppercase\" exclude each other; keep one");
		return false;
	}
	return true;
}

/* Checks the path grammar: name ("[" digits "]")* ("." name ("[" digits "]")*)*. A path
 * may also start with an index. */
static bool path_valid(const char *path)
{
	const char *p = path;

	if (*p == '\0')
		return false;
	while (*p != '\0') {
		size_t name_len = strcspn(p, ".[]");

		p += name_len;
		if (name_len == 0 && *p != '[')
			return false;
		while (*p == '[') {
			size_t digits = strspn(p + 1, "0123456789");

			if (digits == 0 || p[1 + digits] != ']')
				return false;
			p += digits + 2;
		}
		if (*p == '.' && p[1] == '\0')
			return false;
		if (*p == '.')
			p++;
		else if (*p != '\0')
			return false;
	}
	return true;
}

static const json_t *step_index(const json_t *node, size_t index)
{
	void *iter;

	if (json_is_array(node))
		return json_array_get(node, index);
	if (!json_is_object(node))
		return NULL;

	/* jansson keeps object members in document order, so an index selects the N-th
	 * member as written in the file. */
	iter = json_object_iter((json_t *)node);
	while (iter != NULL && index > 0) {
		iter = json_object_iter_next((json_t *)node, iter);
		index--;
	}
	return iter != NULL ? json_object_iter_value(iter) : NULL;
}

const json_t *mapping_resolve_path(const json_t *record, const char *path)
{
	const json_t *node = record;
	const char *p = path;

	if (!path_valid(path))
		return NULL;
	while (node != NULL && *p != '\0') {
		size_t name_len = strcspn(p, ".[");

		if (name_len > 0)
			node = json_is_object(node) ? json_object_getn(node, p, name_len) : NULL;
		p += name_len;
		while (node != NULL && *p == '[') {
			char *end;
			unsigned long long index = strtoull(p + 1, &end, 10);

			node = step_index(node, (size_t)index);
			p = end + 1;
		}
		if (*p == '.')
			p++;
	}
	return node;
}

/* Resolves a record field, or the lookup's virtual field when path names it. */
static const json_t *field_get(const struct mapping *m, const json_t *record, const char *path,
                               const char **lookup_miss)
{
	const json_t *from;
	char *key;
	const json_t *found;

	*lookup_miss = NULL;
	if (!m->has_lookup || strcmp(path, m->lookup.as) != 0)
		return mapping_resolve_path(record, path);

	from = mapping_resolve_path(record, m->lookup.from);
	if (!json_is_string(from))
		return NULL;
	key = fold_key(json_string_value(from));
	found = json_object_get(m->lookup.table, key);
	free(key);
	if (found == NULL)
		*lookup_miss = json_string_value(from);
	return found;
}

static bool is_empty_value(const json_t *node)
{
	if (node == NULL || json_is_null(node))
		return true;
	if (json_is_array(node))
		return json_array_size(node) == 0;
	if (json_is_string(node)) {
		const char *s = json_string_value(node);

		return s[strspn(s, " \t\r\n")] == '\0';
	}
	return false;
}

bool mapping_parse_number(const char *text, bool measurement, double *out)
{
	char *copy = trimmed_copy(text, strlen(text));
	char *start = copy;
	size_t len;
	char *end;
	bool ok = false;

	if (copy == NULL)
		abort();
	len = strlen(start);
	if (measurement && len >= 2 && start[0] == '[' && start[len - 1] == ']') {
		start[len - 1] = '\0';
		start++;
		len -= 2;
	}
	if (measurement && len > 0 && start[len - 1] == ')') {
		char *open = strrchr(start, '(');
		size_t digits = open != NULL ? (size_t)(start + len - 1 - (open + 1)) : 0;

		if (digits > 0 && strspn(open + 1, "0123456789") == digits)
			*open = '\0';
	}

	/* strtod also accepts hex floats, "inf" and "nan", which are not decimal numbers. */
	if (start[0] != '\0' && strspn(start, "+-0123456789.eE") == strlen(start)) {
		errno = 0;
		*out = strtod(start, &end);
		ok = end != start && *end == '\0' && errno == 0 && isfinite(*out);
	}
	free(copy);
	return ok;
}

static char *scalar_to_text(const json_t *node)
{
	char tmp[64];

	if (json_is_integer(node))
		snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(node));
	else if (json_is_real(node))
		snprintf(tmp, sizeof(tmp), "%.15g", json_real_value(node));
	else if (json_is_boolean(node))
		snprintf(tmp, sizeof(tmp), "%s", json_is_true(node) ? "true" : "false");
	else
		return NULL;
	return strdup(tmp);
}

static enum mapping_result text_value(const struct mapping_predicate *p, const json_t *node,
                                      struct object_value *out, char *err, size_t err_size)
{
	char *text;
	const json_t *mapped;

	if (json_is_string(node))
		text = apply_transforms(json_string_value(node), json_string_length(node),
		                        p->transforms);
	else
		text = scalar_to_text(node);
	if (text == NULL) {
		snprintf(err, err_size, "field \"%s\" is an %s, not text", p->field,
		         json_is_object(node) ? "object" : "array");
		return MAPPING_INVALID;
	}

	mapped = p->value_map != NULL ? json_object_get(p->value_map, text) : NULL;
	if (mapped != NULL) {
		free(text);
		text = strdup(json_string_value(mapped));
	}
	out->type = p->type;
	out->text = text;
	out->text_len = strlen(text);
	return MAPPING_OK;
}

static enum mapping_result number_value(const struct mapping_predicate *p, const json_t *node,
                                        struct object_value *out, char *err, size_t err_size)
{
	if (json_is_number(node)) {
		out->number = json_number_value(node);
	} else if (!json_is_string(node) ||
	           !mapping_parse_number(json_string_value(node), p->measurement, &out->number)) {
		char *value_text = json_dumps(node, JSON_ENCODE_ANY | JSON_COMPACT);

		snprintf(err, err_size,
		         "field \"%s\" value %.60s is not a number; fix the record or set "
		         "\"number_format\": \"measurement\" for values such as \"1.008(4)\"",
		         p->field, value_text != NULL ? value_text : "?");
		free(value_text);
		return MAPPING_INVALID;
	}
	out->type = OBJECT_NUMBER;
	return MAPPING_OK;
}

static enum mapping_result boolean_value(const struct mapping_predicate *p, const json_t *node,
                                         struct object_value *out, char *err, size_t err_size)
{
	const char *s = json_string_value(node);

	json_int_t n = json_integer_value(node);

	if (json_is_boolean(node))
		out->boolean = json_is_true(node);
	else if (json_is_integer(node) && (n == 0 || n == 1))
		out->boolean = n == 1;
	else if (s != NULL && (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0))
		out->boolean = true;
	else if (s != NULL && (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0))
		out->boolean = false;
	else {
		snprintf(err, err_size, "field \"%s\" is not a boolean; use true, false, 1 or 0",
		         p->field);
		return MAPPING_INVALID;
	}
	out->type = OBJECT_BOOLEAN;
	return MAPPING_OK;
}

enum mapping_result mapping_value(const struct mapping *m, const struct mapping_predicate *p,
                                  const json_t *record, struct object_value *out, char *err,
                                  size_t err_size)
{
	const char *miss;
	const json_t *node = field_get(m, record, p->field, &miss);

	if (is_empty_value(node)) {
		snprintf(err, err_size, "field \"%s\" is missing or empty", p->field);
		return MAPPING_SKIPPED;
	}
	/* A measurement may be written as a one-element list, [272], in the same sense as
	 * the string "[272]": the mass number of the most stable isotope. */
	if (p->measurement && json_is_array(node) && json_array_size(node) == 1 &&
	    json_is_number(json_array_get(node, 0)))
		node = json_array_get(node, 0);
	if (json_is_array(node)) {
		snprintf(err, err_size,
		         "field \"%s\" is a list; add [0] to the path to take its first element",
		         p->field);
		return MAPPING_INVALID;
	}

	switch (p->type) {
	case OBJECT_NUMBER:
		return number_value(p, node, out, err, err_size);
	case OBJECT_BOOLEAN:
		return boolean_value(p, node, out, err, err_size);
	default:
		return text_value(p, node, out, err, err_size);
	}
}

/* Appends the value of one {placeholder} to the subject being built. */
static enum mapping_result append_placeholder(const struct mapping *m, const json_t *record,
                                              const char *path, struct buf *subject, char *err,
                                              size_t err_size)
{
	const char *miss;
	const json_t *node = field_get(m, record, path, &miss);
	char *text;

	if (miss != NULL) {
		snprintf(err, err_size, "no \"%s\" in the lookup table for \"%.80s\"", m->lookup.as,
		         miss);
		return MAPPING_SKIPPED;
	}
	if (is_empty_value(node)) {
		snprintf(err, err_size, "subject field \"%s\" is missing or empty", path);
		return MAPPING_SKIPPED;
	}
	if (json_is_string(node))
		text = apply_transforms(json_string_value(node), json_string_length(node),
		                        m->subject_transforms);
	else if (json_is_integer(node))
		text = scalar_to_text(node);
	else {
		snprintf(err, err_size, "subject field \"%s\" is not a string or an integer", path);
		return MAPPING_INVALID;
	}

	buf_append(subject, text, strlen(text));
	free(text);
	return MAPPING_OK;
}

enum mapping_result mapping_subject(const struct mapping *m, const json_t *record, char **out,
                                    char *err, size_t err_size)
{
	struct buf subject;
	const char *p = m->subject_template;
	enum mapping_result result = MAPPING_OK;

	buf_init(&subject);
	while (*p != '\0' && result == MAPPING_OK) {
		const char *close;
		char *path;

		if (*p != '{') {
			buf_append(&subject, p, 1);
			p++;
			continue;
		}
		close = strchr(p, '}');
		path = strndup(p + 1, (size_t)(close - p - 1));
		result = append_placeholder(m, record, path, &subject, err, err_size);
		free(path);
		p = close + 1;
	}

	if (result == MAPPING_OK) {
		buf_put_u8(&subject, 0);
		*out = (char *)subject.data;
		return MAPPING_OK;
	}
	buf_free(&subject);
	return result;
}

/* Checks that every {placeholder} is closed and contains a valid path. */
static bool template_valid(const struct mapping *m, const char *tmpl, char *err, size_t err_size)
{
	const char *p = tmpl;
	bool has_placeholder = false;

	while ((p = strchr(p, '{')) != NULL) {
		const char *close = strchr(p, '}');
		char *path = close != NULL ? strndup(p + 1, (size_t)(close - p - 1)) : NULL;
		bool ok = path != NULL &&
		          (path_valid(path) || (m->has_lookup && strcmp(path, m->lookup.as) == 0));

		free(path);
		if (!ok) {
			snprintf(
			        err, err_size,
			        "subject template \"%s\" has an unclosed or malformed placeholder; "
			        "write fields as {name} or {a.b[0]}",
			        tmpl);
			return false;
		}
		has_placeholder = true;
		p = close + 1;
	}
	if (!has_placeholder)
		snprintf(err, err_size,
		         "subject template \"%s\" has no {field}, so every record would share "
		         "one subject; add a placeholder such as {id}",
		         tmpl);
	return has_placeholder;
}

static bool get_confidence(const json_t *node, double fallback, double *out, const char *where,
                           char *err, size_t err_size)
{
	*out = fallback;
	if (node == NULL)
		return true;
	if (!json_is_number(node) || json_number_value(node) < 0.0 ||
	    json_number_value(node) > 1.0) {
		snprintf(err, err_size, "confidence in %s must be a number from 0 to 1", where);
		return false;
	}
	*out = json_number_value(node);
	return true;
}

static bool get_optional_string(const json_t *obj, const char *key, const char **out,
                                const char *where, char *err, size_t err_size)
{
	const json_t *node = json_object_get(obj, key);

	*out = NULL;
	if (node == NULL)
		return true;
	if (!json_is_string(node)) {
		snprintf(err, err_size, "\"%s\" in %s must be a string", key, where);
		return false;
	}
	*out = json_string_value(node);
	return true;
}

static bool get_required_string(const json_t *obj, const char *key, const char **out,
                                const char *where, char *err, size_t err_size)
{
	if (!get_optional_string(obj, key, out, where, err, err_size))
		return false;
	if (*out == NULL || **out == '\0') {
		snprintf(err, err_size, "\"%s\" is missing in %s; add it", key, where);
		return false;
	}
	return true;
}

static bool parse_value_type(const json_t *pred, struct mapping_predicate *p, const char *where,
                             char *err, size_t err_size)
{
	const char *type_name;
	const char *format;

	if (!get_required_string(pred, "type", &type_name, where, err, err_size))
		return false;
	if (!object_type_parse(type_name, &p->type)) {
		snprintf(err, err_size,
		         "type \"%s\" in %s is not one of text, number, boolean, reference",
		         type_name, where);
		return false;
	}

	if (!get_optional_string(pred, "number_format", &format, where, err, err_size))
		return false;
	if (format != NULL && (strcmp(format, "measurement") != 0 || p->type != OBJECT_NUMBER)) {
		snprintf(err, err_size,
		         "number_format in %s must be \"measurement\" and needs type number",
		         where);
		return false;
	}
	p->measurement = format != NULL;
	return true;
}

static bool parse_value_map(const json_t *pred, struct mapping_predicate *p, const char *where,
                            char *err, size_t err_size)
{
	const json_t *map = json_object_get(pred, "value_map");
	const char *key;
	json_t *value;

	p->value_map = NULL;
	if (map == NULL)
		return true;
	if (!json_is_object(map) || (p->type != OBJECT_TEXT && p->type != OBJECT_REFERENCE)) {
		snprintf(err, err_size,
		         "value_map in %s must be an object of strings and needs type text or "
		         "reference",
		         where);
		return false;
	}
	json_object_foreach((json_t *)map, key, value)
	{
		if (!json_is_string(value) || json_string_length(value) == 0) {
			snprintf(err, err_size,
			         "value_map entry \"%s\" in %s must be a non-empty string", key,
			         where);
			return false;
		}
	}
	p->value_map = map;
	return true;
}

static bool parse_predicate(const json_t *pred, size_t index, double default_confidence,
                            struct mapping_predicate *p, char *err, size_t err_size)
{
	char where[48];

	snprintf(where, sizeof(where), "predicates[%zu]", index);
	if (!json_is_object(pred)) {
		snprintf(err, err_size, "%s must be an object", where);
		return false;
	}
	if (!check_keys(pred, predicate_keys, where, err, err_size) ||
	    !get_required_string(pred, "predicate", &p->predicate, where, err, err_size) ||
	    !get_required_string(pred, "field", &p->field, where, err, err_size) ||
	    !parse_value_type(pred, p, where, err, err_size) ||
	    !get_confidence(json_object_get(pred, "confidence"), default_confidence, &p->confidence,
	                    where, err, err_size) ||
	    !mapping_parse_transforms(json_object_get(pred, "transform"), &p->transforms, err,
	                              err_size) ||
	    !parse_value_map(pred, p, where, err, err_size))
		return false;

	if (strlen(p->predicate) > STEMEDB_PREDICATE_MAX) {
		snprintf(err, err_size, "predicate name in %s is longer than %d bytes", where,
		         STEMEDB_PREDICATE_MAX);
		return false;
	}
	return true;
}

static bool parse_predicates(struct mapping *m, double default_confidence, char *err,
                             size_t err_size)
{
	const json_t *list = json_object_get(m->doc, "predicates");

	if (!json_is_array(list) || json_array_size(list) == 0) {
		snprintf(err, err_size,
		         "\"predicates\" must be a non-empty list of "
		         "{\"predicate\", \"field\", \"type\"} objects");
		return false;
	}
	m->predicate_count = json_array_size(list);
	m->predicates = calloc(m->predicate_count, sizeof(*m->predicates));
	if (m->predicates == NULL)
		abort();

	for (size_t i = 0; i < m->predicate_count; i++) {
		struct mapping_predicate *p = &m->predicates[i];

		if (!parse_predicate(json_array_get(list, i), i, default_confidence, p, err,
		                     err_size))
			return false;
		if (!path_valid(p->field) &&
		    !(m->has_lookup && strcmp(p->field, m->lookup.as) == 0)) {
			snprintf(
			        err, err_size,
			        "field path \"%s\" in predicates[%zu] is malformed; write a.b[0].c",
			        p->field, i);
			return false;
		}
	}
	return true;
}

/* Joins a lookup file name to the mapping file's folder unless it is absolute. */
static char *path_beside(const char *mapping_path, const char *name)
{
	char *copy;
	char *joined;

	if (name[0] == '/')
		return strdup(name);
	copy = strdup(mapping_path);
	if (copy == NULL || asprintf(&joined, "%s/%s", dirname(copy), name) < 0)
		abort();
	free(copy);
	return joined;
}

static void lookup_add(json_t *table, const json_t *record, const char *match, const char *value)
{
	const json_t *key_node = mapping_resolve_path(record, match);
	const json_t *value_node = mapping_resolve_path(record, value);
	char *key;

	if (!json_is_string(key_node) || !json_is_string(value_node) || is_empty_value(value_node))
		return;
	key = fold_key(json_string_value(key_node));
	json_object_set_new(table, key, json_string(json_string_value(value_node)));
	free(key);
}

static bool load_lookup_table(struct mapping *m, const json_t *spec, const char *mapping_path,
                              char *err, size_t err_size)
{
	const char *file;
	const char *records;
	const char *match;
	const char *value;
	char *path;
	json_error_t jerr;
	json_t *doc;
	const json_t *list;
	size_t i;
	json_t *record;

	if (!check_keys(spec, lookup_keys, "lookup", err, err_size) ||
	    !get_required_string(spec, "file", &file, "lookup", err, err_size) ||
	    !get_optional_string(spec, "records", &records, "lookup", err, err_size) ||
	    !get_required_string(spec, "match", &match, "lookup", err, err_size) ||
	    !get_required_string(spec, "value", &value, "lookup", err, err_size) ||
	    !get_required_string(spec, "from", &m->lookup.from, "lookup", err, err_size) ||
	    !get_required_string(spec, "as", &m->lookup.as, "lookup", err, err_size))
		return false;

	path = path_beside(mapping_path, file);
	doc = json_load_file(path, 0, &jerr);
	if (doc == NULL) {
		snprintf(err, err_size, "cannot read lookup file %s: %s (line %d); check the path",
		         path, jerr.text, jerr.line);
		free(path);
		return false;
	}
	list = records != NULL && records[0] != '\0' ? mapping_resolve_path(doc, records) : doc;
	if (!json_is_array(list)) {
		snprintf(err, err_size, "lookup file %s has no array of records at \"%s\"", path,
		         records != NULL ? records : "");
		free(path);
		json_decref(doc);
		return false;
	}

	m->lookup.table = json_object();
	json_array_foreach(list, i, record)
	{
		lookup_add(m->lookup.table, record, match, value);
	}
	m->has_lookup = true;
	free(path);
	json_decref(doc);
	return true;
}

static bool parse_timestamp(struct mapping *m, char *err, size_t err_size)
{
	const json_t *node = json_object_get(m->doc, "timestamp");

	if (node == NULL)
		return true;
	if (!json_is_integer(node) || json_integer_value(node) < 0) {
		snprintf(err, err_size,
		         "\"timestamp\" must be Unix seconds as a non-negative integer, "
		         "e.g. 1700000000");
		return false;
	}
	m->has_timestamp = true;
	m->timestamp = (uint64_t)json_integer_value(node);
	return true;
}

static bool parse_jsonl_flag(struct mapping *m, char *err, size_t err_size)
{
	const json_t *node = json_object_get(m->doc, "jsonl");

	m->jsonl = -1;
	if (node == NULL)
		return true;
	if (!json_is_boolean(node)) {
		snprintf(err, err_size, "\"jsonl\" must be true or false");
		return false;
	}
	m->jsonl = json_is_true(node) ? 1 : 0;
	return true;
}

static bool parse_top_level(struct mapping *m, const char *path, double *confidence, char *err,
                            size_t err_size)
{
	const json_t *lookup = json_object_get(m->doc, "lookup");

	if (!check_keys(m->doc, top_level_keys, "the mapping", err, err_size) ||
	    !get_optional_string(m->doc, "records", &m->records_path, "the mapping", err,
	                         err_size) ||
	    !get_optional_string(m->doc, "key_field", &m->key_field, "the mapping", err,
	                         err_size) ||
	    !get_required_string(m->doc, "subject", &m->subject_template, "the mapping", err,
	                         err_size) ||
	    !mapping_parse_transforms(json_object_get(m->doc, "subject_transform"),
	                              &m->subject_transforms, err, err_size) ||
	    !parse_jsonl_flag(m, err, err_size) || !parse_timestamp(m, err, err_size) ||
	    !get_confidence(json_object_get(m->doc, "confidence"), MAPPING_DEFAULT_CONFIDENCE,
	                    confidence, "the mapping", err, err_size))
		return false;

	if (m->key_field == NULL)
		m->key_field = MAPPING_DEFAULT_KEY_FIELD;
	if (m->records_path != NULL && m->records_path[0] != '\0' && !path_valid(m->records_path)) {
		snprintf(err, err_size, "\"records\" path \"%s\" is malformed; write a.b[0].c",
		         m->records_path);
		return false;
	}
	if (lookup != NULL && !json_is_object(lookup)) {
		snprintf(err, err_size, "\"lookup\" must be an object");
		return false;
	}
	return lookup == NULL || load_lookup_table(m, lookup, path, err, err_size);
}

bool mapping_load(const char *path, struct mapping *m, char *err, size_t err_size)
{
	json_error_t jerr;
	double confidence;

	memset(m, 0, sizeof(*m));
	m->doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (m->doc == NULL) {
		snprintf(err, err_size, "cannot read mapping %s: %s (line %d, column %d)", path,
		         jerr.text, jerr.line, jerr.column);
		return false;
	}
	if (!json_is_object(m->doc)) {
		snprintf(err, err_size, "mapping %s must be a JSON object", path);
		goto fail;
	}

	if (!parse_top_level(m, path, &confidence, err, err_size) ||
	    !template_valid(m, m->subject_template, err, err_size) ||
	    !parse_predicates(m, confidence, err, err_size))
		goto fail;
	return true;

fail:
	mapping_free(m);
	return false;
}

void mapping_free(struct mapping *m)
{
	free(m->predicates);
	json_decref(m->lookup.table);
	json_decref(m->doc);
	memset(m, 0, sizeof(*m));
}

static json_t *read_jsonl(const char *data_path, char *err, size_t err_size)
{
	FILE *f = fopen(data_path, "r");
	json_t *records = json_array();
	char *line = NULL;
	size_t cap = 0;
	size_t line_no = 0;
	json_error_t jerr;

	if (f == NULL) {
		snprintf(err, err_size, "cannot open %s: %s", data_path, strerror(errno));
		json_decref(records);
		return NULL;
	}
	while (getline(&line, &cap, f) >= 0) {
		json_t *record;

		line_no++;
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		record = json_loads(line, 0, &jerr);
		if (record == NULL) {
			snprintf(err, err_size,
			         "%s line %zu is not JSON: %s; fix the line or "
			         "drop --jsonl for a plain JSON file",
			         data_path, line_no, jerr.text);
			json_decref(records);
			records = NULL;
			break;
		}
		json_array_append_new(records, record);
	}
	free(line);
	fclose(f);
	return records;
}

/* Turns {"BO": {...}, "BI": {...}} into [{..., key_field: "BO"}, ...]. */
static json_t *object_records(const struct mapping *m, const json_t *obj)
{
	json_t *records = json_array();
	const char *key;
	json_t *value;

	json_object_foreach((json_t *)obj, key, value)
	{
		json_t *record = json_is_object(value) ? json_copy(value) : json_object();

		if (!json_is_object(value))
			json_object_set(record, "value", value);
		json_object_set_new(record, m->key_field, json_string(key));
		json_array_append_new(records, record);
	}
	return records;
}

json_t *mapping_read_records(const struct mapping *m, const char *data_path, bool jsonl, char *err,
                             size_t err_size)
{
	bool has_path = m->records_path != NULL && m->records_path[0] != '\0';
	json_error_t jerr;
	json_t *doc;
	const json_t *node;
	json_t *records = NULL;

	if (jsonl)
		return read_jsonl(data_path, err, err_size);
	doc = json_load_file(data_path, 0, &jerr);
	if (doc == NULL) {
		snprintf(err, err_size, "cannot read %s: %s (line %d, column %d)", data_path,
		         jerr.text, jerr.line, jerr.column);
		return NULL;
	}

	node = has_path ? mapping_resolve_path(doc, m->records_path) : doc;
	if (json_is_array(node))
		records = json_incref((json_t *)node);
	else if (json_is_object(node))
		records = object_records(m, node);
	else
		snprintf(err, err_size,
		         "%s has no array or object of records at \"%s\"; fix \"records\" in "
		         "the mapping",
		         data_path, has_path ? m->records_path : "(root)");
	json_decref(doc);
	return records;
}
