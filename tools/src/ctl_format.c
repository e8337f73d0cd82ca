/* Output helpers shared by query, skeptic and health. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

void ctl_format_value(const json_t *object, char *out, size_t out_size)
{
	const char *type = json_string_value(json_object_get(object, "type"));
	const json_t *value = json_object_get(object, "value");

	if (type == NULL || value == NULL) {
		snprintf(out, out_size, "?");
		return;
	}
	if (strcmp(type, "text") == 0)
		snprintf(out, out_size, "\"%s\"", json_string_value(value));
	else if (strcmp(type, "reference") == 0)
		snprintf(out, out_size, "->%s", json_string_value(value));
	else if (json_is_boolean(value))
		snprintf(out, out_size, "%s", json_is_true(value) ? "true" : "false");
	else if (json_is_integer(value))
		snprintf(out, out_size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
	else
		snprintf(out, out_size, "%.15g", json_number_value(value));
}

void ctl_print_json(const json_t *json)
{
	char *text = json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (text != NULL)
		printf("%s\n", text);
	free(text);
}
