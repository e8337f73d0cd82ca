/* `stemedb-ctl quarantine list|approve|reject`: the quarantine of content defense over
 * api.sock, for operators on the node. The gateway serves the same operations over
 * HTTP (GET /v1/admin/quarantine, POST /v1/admin/quarantine/{hash}/approve|reject). */

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "stemedb/hex.h"
#include "stemedb/ipc.h"

#define QUARANTINE_HASH_LEN 32

static const char usage_text[] =
        "usage: stemedb-ctl quarantine [--socket PATH] [--timeout-ms N] list [FILTERS]\n"
        "       stemedb-ctl quarantine [--socket PATH] [--timeout-ms N] approve|reject HASH\n"
        "\n"
        "list prints one JSON object per entry, then a summary object with the per-agent\n"
        "counts and the cursor of the next page. approve indexes a pending assertion so that\n"
        "lenses see it at once; reject keeps it stored but never indexed. Both are final.\n"
        "\n"
        "Filters of list:\n"
        "  --agent ID        64 hex digits of the signer\n"
        "  --reason R        duplicate, low_quality or untrusted_high_confidence\n"
        "  --status S        pending (default), approved or rejected\n"
        "  --limit N         entries per page, 1 to 1000 (default 100)\n"
        "  --cursor HASH     next_cursor of the previous page\n"
        "\n"
        "Options:\n"
        "  --socket PATH     api.sock (default $STEMEDB_RUN_DIR/api.sock, else\n"
        "                    ./var/run/api.sock)\n"
        "  --timeout-ms N    deadline of the call in milliseconds (default 5000)\n";

struct quarantine_opts {
	char socket[4096];
	uint32_t timeout_ms;
	uint8_t agent[QUARANTINE_HASH_LEN];
	bool has_agent;
	const char *reason;
	const char *status;
	uint32_t limit;
	uint8_t cursor[QUARANTINE_HASH_LEN];
	bool has_cursor;
};

static void print_json(json_t *obj)
{
	char *out = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);

	printf("%s\n", out);
	fflush(stdout);
	free(out);
	json_decref(obj);
}

static json_t *hex_or_null(const ProtobufCBinaryData *data)
{
	char out[2 * QUARANTINE_HASH_LEN + 1];

	if (data->len != QUARANTINE_HASH_LEN)
		return json_null();
	hex_encode(data->data, data->len, out);
	return json_string(out);
}

static json_t *item_json(const Stemedb__Ipc__V1__QuarantineItem *item)
{
	json_t *out =
	        json_pack("{s:o, s:s, s:s, s:f, s:o, s:I, s:I}", "hash", hex_or_null(&item->hash),
	                  "reason", item->reason, "status", item->status, "quality", item->quality,
	                  "agent_id", hex_or_null(&item->agent_id), "created_ms",
	                  (json_int_t)item->created_ms, "decided_ms", (json_int_t)item->decided_ms);

	if (item->resembles.len == QUARANTINE_HASH_LEN) {
		json_object_set_new(out, "resembles", hex_or_null(&item->resembles));
		json_object_set_new(out, "similarity", json_real(item->similarity));
	}
	return out;
}

static bool parse_hash(const char *text, uint8_t out[QUARANTINE_HASH_LEN])
{
	return text != NULL && strlen(text) == 2 * QUARANTINE_HASH_LEN &&
	       hex_decode(text, strlen(text), out, QUARANTINE_HASH_LEN);
}

static int run_call(const struct quarantine_opts *o, ipc_envelope *request, ipc_body_case expected,
                    const char *name, ipc_envelope **reply)
{
	struct ipc_client_options options = {.socket_path = o->socket};
	struct ipc_client *client = ipc_client_new(&options);
	Stemedb__Ipc__V1__ErrorCode code = STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED;
	enum ipc_result r;
	char err[512];

	r = ipc_client_call(client, request, expected, o->timeout_ms, reply, &code, err,
	                    sizeof(err));
	ipc_client_free(client);
	if (r == IPC_OK)
		return CTL_EXIT_OK;
	ctl_error("quarantine %s on %s failed: %s: %s", name, o->socket, ipc_result_name(r), err);
	/* A rejected request (conflict, not found, invalid) is 1; transport errors are 2. */
	return r == IPC_ERR_REMOTE ? CTL_EXIT_REJECTED : CTL_EXIT_USAGE;
}

static int list(const struct quarantine_opts *o)
{
	Stemedb__Ipc__V1__QuarantineListRequest body =
	        STEMEDB__IPC__V1__QUARANTINE_LIST_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	const Stemedb__Ipc__V1__QuarantineListResponse *res;
	ipc_envelope *reply = NULL;
	json_t *agents;
	int status;

	if (o->has_agent) {
		body.agent_id.data = (uint8_t *)o->agent;
		body.agent_id.len = QUARANTINE_HASH_LEN;
	}
	body.reason = (char *)(o->reason != NULL ? o->reason : "");
	body.status = (char *)(o->status != NULL ? o->status : "");
	body.limit = o->limit;
	if (o->has_cursor) {
		body.after.data = (uint8_t *)o->cursor;
		body.after.len = QUARANTINE_HASH_LEN;
	}
	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_LIST_REQUEST;
	request.quarantine_list_request = &body;
	status = run_call(o, &request, STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_LIST_RESPONSE,
	                  "list", &reply);
	if (status != CTL_EXIT_OK)
		return status;

	res = reply->quarantine_list_response;
	for (size_t i = 0; i < res->n_items; i++)
		print_json(item_json(res->items[i]));
	agents = json_object();
	for (size_t i = 0; i < res->n_agents; i++) {
		char agent[2 * QUARANTINE_HASH_LEN + 1];

		if (res->agents[i]->agent_id.len != QUARANTINE_HASH_LEN)
			continue;
		hex_encode(res->agents[i]->agent_id.data, QUARANTINE_HASH_LEN, agent);
		json_object_set_new(agents, agent, json_integer((json_int_t)res->agents[i]->count));
	}
	print_json(json_pack("{s:I, s:o, s:o}", "total", (json_int_t)res->total, "agents", agents,
	                     "next_cursor", hex_or_null(&res->next_after)));
	ipc_envelope_free(reply);
	return CTL_EXIT_OK;
}

static int decide(const struct quarantine_opts *o, const uint8_t hash[QUARANTINE_HASH_LEN],
                  bool approve)
{
	Stemedb__Ipc__V1__QuarantineDecisionRequest body =
	        STEMEDB__IPC__V1__QUARANTINE_DECISION_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	ipc_envelope *reply = NULL;
	int status;

	body.hash.data = (uint8_t *)hash;
	body.hash.len = QUARANTINE_HASH_LEN;
	body.approve = approve;
	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_DECISION_REQUEST;
	request.quarantine_decision_request = &body;
	status =
	        run_call(o, &request, STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_DECISION_RESPONSE,
	                 approve ? "approve" : "reject", &reply);
	if (status != CTL_EXIT_OK)
		return status;
	print_json(item_json(reply->quarantine_decision_response->item));
	ipc_envelope_free(reply);
	return CTL_EXIT_OK;
}

/* Applies one option; false with a message on an invalid value. */
static bool apply_option(struct quarantine_opts *o, int opt, const char *value)
{
	char *end = NULL;
	unsigned long number;

	switch (opt) {
	case 's':
		snprintf(o->socket, sizeof(o->socket), "%s", value);
		return true;
	case 't':
		number = strtoul(value, &end, 10);
		if (value[0] < '0' || value[0] > '9' || *end != '\0' || number == 0 ||
		    number > 86400000) {
			ctl_error("--timeout-ms takes 1 to 86400000, not \"%s\"", value);
			return false;
		}
		o->timeout_ms = (uint32_t)number;
		return true;
	case 'a':
		o->has_agent = parse_hash(value, o->agent);
		if (!o->has_agent)
			ctl_error("--agent takes the 64 hex digits of an agent id, not \"%s\"",
			          value);
		return o->has_agent;
	case 'r':
		o->reason = value;
		return true;
	case 'S':
		o->status = value;
		return true;
	case 'l':
		number = strtoul(value, &end, 10);
		if (value[0] < '0' || value[0] > '9' || *end != '\0' || number == 0 ||
		    number > 1000) {
			ctl_error("--limit takes 1 to 1000, not \"%s\"", value);
			return false;
		}
		o->limit = (uint32_t)number;
		return true;
	case 'c':
		o->has_cursor = parse_hash(value, o->cursor);
		if (!o->has_cursor)
			ctl_error("--cursor takes the next_cursor of a list (64 hex digits), not "
			          "\"%s\"",
			          value);
		return o->has_cursor;
	default:
		return false;
	}
}

int ctl_cmd_quarantine(int argc, char **argv)
{
	static const struct option options[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"agent", required_argument, NULL, 'a'},
	        {"reason", required_argument, NULL, 'r'},
	        {"status", required_argument, NULL, 'S'},
	        {"limit", required_argument, NULL, 'l'},
	        {"cursor", required_argument, NULL, 'c'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct quarantine_opts o = {.timeout_ms = 5000};
	const char *run = getenv("STEMEDB_RUN_DIR");
	uint8_t hash[QUARANTINE_HASH_LEN];
	const char *action;
	int opt;

	if (run != NULL && run[0] != '\0')
		snprintf(o.socket, sizeof(o.socket), "%.4000s/%s", run, IPC_API_SOCKET_NAME);
	else
		snprintf(o.socket, sizeof(o.socket), "./var/run/%s", IPC_API_SOCKET_NAME);

	/* 0 makes glibc reinitialize, so the filters may follow the action ("list
	 * --reason duplicate") although the caller parsed its own options in order. */
	optind = 0;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return CTL_EXIT_OK;
		}
		if (opt == '?' || !apply_option(&o, opt, optarg)) {
			fputs(usage_text, stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		ctl_error("quarantine needs an action: list, approve or reject");
		fputs(usage_text, stderr);
		return CTL_EXIT_USAGE;
	}
	action = argv[optind];
	if (strcmp(action, "list") == 0 && optind + 1 == argc)
		return list(&o);
	if ((strcmp(action, "approve") == 0 || strcmp(action, "reject") == 0) &&
	    optind + 2 == argc && parse_hash(argv[optind + 1], hash))
		return decide(&o, hash, action[0] == 'a');
	ctl_error("invalid quarantine action or arguments; approve and reject take the 64 hex "
	          "digits of an assertion hash");
	fputs(usage_text, stderr);
	return CTL_EXIT_USAGE;
}
