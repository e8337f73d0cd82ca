/* Unit tests of the import mapping: paths, number parsing, subjects and values. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "stemedb/mapping.h"

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *doc = json_loads(text, 0, &jerr);

	if (doc == NULL)
		fail_msg("test JSON does not parse: %s", jerr.text);
	return doc;
}

/* Writes text to a fresh temporary file and returns its malloc'ed path. */
static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/stemedb-test-mapping-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static bool load_text(const char *text, struct mapping *m, char *err, size_t err_size)
{
	char *path = write_temp(text);
	bool ok = mapping_load(path, m, err, err_size);

	unlink(path);
	free(path);
	return ok;
}

static void test_resolve_path_steps(void **state)
{
	json_t *doc =
	        parse("{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"o\": {\"k1\": 1, \"k2\": 2}}");

	(void)state;
	assert_int_equal(json_integer_value(mapping_resolve_path(doc, "a.b[0]")), 10);
	assert_string_equal(json_string_value(mapping_resolve_path(doc, "a.b[1].c")), "x");
	assert_int_equal(json_integer_value(mapping_resolve_path(doc, "o[1]")), 2);
	assert_null(mapping_resolve_path(doc, "a.b[2]"));
	assert_null(mapping_resolve_path(doc, "a.missing"));
	assert_null(mapping_resolve_path(doc, "a..b"));
	assert_null(mapping_resolve_path(doc, "a.b[x]"));
	assert_null(mapping_resolve_path(doc, "a."));
	assert_null(mapping_resolve_path(doc, ""));
	json_decref(doc);
}

static void test_parse_number_plain(void **state)
{
	double v = 0;

	(void)state;
	assert_true(mapping_parse_number(" 1098581 ", false, &v));
	assert_true(v == 1098581.0);
	assert_true(mapping_parse_number("-12.5e2", false, &v));
	assert_true(v == -1250.0);
	assert_false(mapping_parse_number("1,234.5", false, &v));
	assert_false(mapping_parse_number("23.5 km2", false, &v));
	assert_false(mapping_parse_number("inf", false, &v));
	assert_false(mapping_parse_number("nan", false, &v));
	assert_false(mapping_parse_number("0x10", false, &v));
	assert_false(mapping_parse_number("1e999", false, &v));
	assert_false(mapping_parse_number("", false, &v));
	assert_false(mapping_parse_number("1.00794(4)", false, &v));
}

static void test_parse_number_measurement(void **state)
{
	double v = 0;

	(void)state;
	assert_true(mapping_parse_number("1.00794(4)", true, &v));
	assert_true(v == 1.00794);
	assert_true(mapping_parse_number("[209]", true, &v));
	assert_true(v == 209.0);
	assert_false(mapping_parse_number("1.0()", true, &v));
	assert_false(mapping_parse_number("1.0(a)", true, &v));
	assert_false(mapping_parse_number("[", true, &v));
}

static void test_parse_transforms(void **state)
{
	json_t *good = parse("[\"trim\", \"uppercase\"]");
	json_t *bad = parse("[\"reverse\"]");
	json_t *both = parse("[\"lowercase\", \"uppercase\"]");
	unsigned flags = 0;
	char err[256];

	(void)state;
	assert_true(mapping_parse_transforms(good, &flags, err, sizeof(err)));
	assert_int_equal(flags, MAPPING_TRIM | MAPPING_UPPERCASE);
	assert_false(mapping_parse_transforms(bad, &flags, err, sizeof(err)));
	assert_non_null(strstr(err, "transform 0"));
	assert_false(mapping_parse_transforms(both, &flags, err, sizeof(err)));
	json_decref(good);
	json_decref(bad);
	json_decref(both);
}

static const char country_mapping[] =
        "{\"subject\": \"country/{iso.a2}\", \"subject_transform\": [\"trim\", \"uppercase\"],"
        " \"timestamp\": 1700000000, \"confidence\": 0.7,"
        " \"predicates\": ["
        "  {\"predicate\": \"capital\", \"field\": \"capital[0]\", \"type\": \"text\","
        "   \"transform\": [\"trim\"]},"
        "  {\"predicate\": \"area_km2\", \"field\": \"area\", \"type\": \"number\","
        "   \"confidence\": 0.5},"
        "  {\"predicate\": \"landlocked\", \"field\": \"landlocked\", \"type\": \"boolean\"},"
        "  {\"predicate\": \"continent\", \"field\": \"cont\", \"type\": \"text\","
        "   \"value_map\": {\"SA\": \"South America\"}}]}";

static void test_load_and_subject(void **state)
{
	struct mapping m;
	char err[512] = "";
	char *subject = NULL;
	json_t *record = parse("{\"iso\": {\"a2\": \" bo \"}}");
	json_t *no_code = parse("{\"iso\": {\"a2\": \"\"}}");

	(void)state;
	assert_true(load_text(country_mapping, &m, err, sizeof(err)));
	assert_int_equal(m.predicate_count, 4);
	assert_true(m.has_timestamp);
	assert_int_equal(m.timestamp, 1700000000);
	assert_true(m.predicates[0].confidence == 0.7);
	assert_true(m.predicates[1].confidence == 0.5);

	assert_int_equal(mapping_subject(&m, record, &subject, err, sizeof(err)), MAPPING_OK);
	assert_string_equal(subject, "country/BO");
	free(subject);
	assert_int_equal(mapping_subject(&m, no_code, &subject, err, sizeof(err)), MAPPING_SKIPPED);
	json_decref(record);
	json_decref(no_code);
	mapping_free(&m);
}

static void test_values_convert(void **state)
{
	struct mapping m;
	char err[512] = "";
	struct object_value v = {0};
	json_t *record = parse("{\"capital\": [\" Sucre \"], \"area\": \"1098581\","
	                       " \"landlocked\": \"1\", \"cont\": \"SA\"}");

	(void)state;
	assert_true(load_text(country_mapping, &m, err, sizeof(err)));

	assert_int_equal(mapping_value(&m, &m.predicates[0], record, &v, err, sizeof(err)),
	                 MAPPING_OK);
	assert_string_equal(v.text, "Sucre");
	free(v.text);
	v.text = NULL;
	assert_int_equal(mapping_value(&m, &m.predicates[1], record, &v, err, sizeof(err)),
	                 MAPPING_OK);
	assert_true(v.number == 1098581.0);
	assert_int_equal(mapping_value(&m, &m.predicates[2], record, &v, err, sizeof(err)),
	                 MAPPING_OK);
	assert_true(v.boolean);
	assert_int_equal(mapping_value(&m, &m.predicates[3], record, &v, err, sizeof(err)),
	                 MAPPING_OK);
	assert_string_equal(v.text, "South America");
	free(v.text);
	json_decref(record);
	mapping_free(&m);
}

static void test_values_skip_and_invalid(void **state)
{
	struct mapping m;
	char err[512] = "";
	struct object_value v = {0};
	json_t *record = parse("{\"capital\": [], \"area\": \"23.5 km2\", \"landlocked\": \"yes\","
	                       " \"cont\": null}");

	(void)state;
	assert_true(load_text(country_mapping, &m, err, sizeof(err)));
	assert_int_equal(mapping_value(&m, &m.predicates[0], record, &v, err, sizeof(err)),
	                 MAPPING_SKIPPED);
	assert_int_equal(mapping_value(&m, &m.predicates[1], record, &v, err, sizeof(err)),
	                 MAPPING_INVALID);
	assert_non_null(strstr(err, "\"23.5 km2\""));
	assert_int_equal(mapping_value(&m, &m.predicates[2], record, &v, err, sizeof(err)),
	                 MAPPING_INVALID);
	assert_int_equal(mapping_value(&m, &m.predicates[3], record, &v, err, sizeof(err)),
	                 MAPPING_SKIPPED);
	json_decref(record);
	mapping_free(&m);
}

static void test_load_rejects(void **state)
{
	static const struct {
		const char *text;
		const char *message;
	} cases[] = {
	        {"[]", "must be a JSON object"},
	        {"{\"subject\": \"s/{id}\", \"predicates\": [], \"x\": 1}", "unknown key \"x\""},
	        {"{\"subject\": \"s/{id}\", \"predicates\": []}", "non-empty list"},
	        {"{\"subject\": \"s/{id\", \"predicates\": [{\"predicate\": \"p\", \"field\": "
	         "\"f\","
	         " \"type\": \"text\"}]}",
	         "unclosed or malformed"},
	        {"{\"subject\": \"s/{id}\", \"predicates\": [{\"predicate\": \"p\", \"field\": "
	         "\"f\","
	         " \"type\": \"text\", \"number_format\": \"measurement\"}]}",
	         "needs type number"},
	        {"{\"subject\": \"s/{id}\", \"timestamp\": -1, \"predicates\": [{\"predicate\": "
	         "\"p\","
	         " \"field\": \"f\", \"type\": \"text\"}]}",
	         "non-negative integer"},
	        {"{\"subject\": \"s/{id}\", \"lookup\": {\"file\": \"/nonexistent/codes.json\","
	         " \"match\": \"a\", \"value\": \"b\", \"from\": \"c\", \"as\": \"code\"},"
	         " \"predicates\": [{\"predicate\": \"p\", \"field\": \"f\", \"type\": \"text\"}]}",
	         "cannot read lookup file"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mapping m;
		char err[512] = "";

		if (load_text(cases[i].text, &m, err, sizeof(err)))
			fail_msg("case %zu loaded but should fail with \"%s\"", i,
			         cases[i].message);
		if (strstr(err, cases[i].message) == NULL)
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].message);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_resolve_path_steps),
	        cmocka_unit_test(test_parse_number_plain),
	        cmocka_unit_test(test_parse_number_measurement),
	        cmocka_unit_test(test_parse_transforms),
	        cmocka_unit_test(test_load_and_subject),
	        cmocka_unit_test(test_values_convert),
	        cmocka_unit_test(test_values_skip_and_invalid),
	        cmocka_unit_test(test_load_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
