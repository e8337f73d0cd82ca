/* `stemedb-ctl breakers`: lists, bans and resets the per-agent circuit breakers of a
 * node over its api.sock, the same calls as the gateway's /v1/admin/circuit_breakers. */

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "stemedb/hex.h"
#include "stemedb/ipc.h"

static const char usage_text[] =
        "usage: stemedb-ctl breakers [--socket PATH] [--timeout-ms N] ACTION [ARGS]\n"
        "\n"
        "Actions:\n"
        "  list                                        breakers that are open, half-open\n"
        "                                              or have recent failures\n"
        "  ban AGENT_ID --duration SECONDS --reason TEXT\n"
        "                                              reject the agent for SECONDS\n"
        "  reset AGENT_ID                              close the agent's breaker\n"
        "\n"
        "Options:\n"
        "  --socket PATH     api.sock (default $STEMEDB_RUN_DIR/api.sock, else\n"
        "                    ./var/run/api.sock)\n"
        "  --timeout-ms N    deadline of the call in milliseconds (default 5000)\n"
        "  --duration N      ban: length of the ban in seconds (1 to 31536000)\n"
        "  --reason TEXT     ban: why the agent is banned (1 to 256 bytes)\n"
        "\n"
        "Output: one JSON object on stdout.\n";

struct breakers_opts {
	char socket[4096];
	uint64_t timeout_ms;
	uint64_t duration;
	const char *reason;
};

static json_t *breaker_json(const Stemedb__Ipc__V1__CircuitBreaker *m)
{
	char agent[65] = "";

	if (m->agent_id.len == 32)
		hex_encode(m->agent_id.data, 32, agent);
	return json_pack("{s:s, s:s, s:i, s:I, s:b, s:s}", "agent_id", agent, "state", m->state,
	                 "recent_failures", (int)m->recent_failures, "open_until_unix_ms",
	                 (json_int_t)m->open_until_unix_ms, "banned", m->banned, "reason",
	                 m->reason);
}

static json_t *reply_json(const ipc_envelope *reply)
{
	const Stemedb__Ipc__V1__CircuitBreakerResponse *one;
	json_t *list;

	if (reply->body_case == STEMEDB__IPC__V1__ENVELOPE__BODY_LIST_CIRCUIT_BREAKERS_RESPONSE) {
		list = json_array();
		for (size_t i = 0; i < reply->list_circuit_breakers_response->n_breakers; i++)
			json_array_append_new(
			        list,
			        breaker_json(reply->list_circuit_breakers_response->breakers[i]));
		return json_pack("{s:o, s:b}", "circuit_breakers", list, "truncated",
		                 reply->list_circuit_breakers_response->truncated);
	}
	one = reply->circuit_breaker_response;
	if (one->breaker == NULL)
		return json_pack("{s:b}", "found", one->found);
	return json_pack("{s:o, s:b}", "circuit_breaker", breaker_json(one->breaker), "found",
	                 one->found);
}

static bool parse_agent(const char *text, uint8_t agent[32])
{
	if (text == NULL || strlen(text) != 64 || !hex_decode(text, 64, agent, 32)) {
		ctl_error("breakers: '%s' is not an agent id; give its 64 hex characters",
		          text != NULL ? text : "");
		return false;
	}
	return true;
}

static int run_action(const struct breakers_opts *o, int argc, char **argv)
{
	struct ipc_client_options options = {.socket_path = o->socket};
	struct ipc_client *client;
	ipc_envelope *reply = NULL;
	enum ipc_result r;
	uint8_t agent[32];
	char err[512];
	char *text;
	json_t *out;
	const char *action = argv[0];

	if (strcmp(action, "list") == 0 && argc == 1) {
		client = ipc_client_new(&options);
		r = ipc_call_list_circuit_breakers(client, (uint32_t)o->timeout_ms, &reply, err,
		                                   sizeof(err));
	} else if (strcmp(action, "ban") == 0 && argc == 2) {
		if (!parse_agent(argv[1], agent))
			return CTL_EXIT_USAGE;
		if (o->duration < 1 || o->duration > 31536000 || o->reason == NULL ||
		    o->reason[0] == '\0' || strlen(o->reason) > 256) {
			ctl_error("breakers ban needs --duration from 1 to 31536000 seconds and a "
			          "--reason of 1 to 256 bytes");
			return CTL_EXIT_USAGE;
		}
		client = ipc_client_new(&options);
		r = ipc_call_ban_circuit_breaker(client, agent, o->duration, o->reason,
		                                 (uint32_t)o->timeout_ms, &reply, err, sizeof(err));
	} else if (strcmp(action, "reset") == 0 && argc == 2) {
		if (!parse_agent(argv[1], agent))
			return CTL_EXIT_USAGE;
		client = ipc_client_new(&options);
		r = ipc_call_reset_circuit_breaker(client, agent, (uint32_t)o->timeout_ms, &reply,
		                                   err, sizeof(err));
	} else {
		ctl_error("breakers: invalid action or arguments \"%s\"", action);
		fputs(usage_text, stderr);
		return CTL_EXIT_USAGE;
	}

	ipc_client_free(client);
	if (r != IPC_OK) {
		ctl_error("breakers %s on %s failed: %s: %s", action, o->socket, ipc_result_name(r),
		          err);
		return CTL_EXIT_REJECTED;
	}
	out = reply_json(reply);
	text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(out);
	ipc_envelope_free(reply);
	printf("%s\n", text);
	free(text);
	return CTL_EXIT_OK;
}

int ctl_cmd_breakers(int argc, char **argv)
{
	static const struct option options[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"duration", required_argument, NULL, 'd'},
	        {"reason", required_argument, NULL, 'r'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct breakers_opts o = {.timeout_ms = 5000};
	const char *run = getenv("STEMEDB_RUN_DIR");
	int opt;

	if (run != NULL && run[0] != '\0')
		snprintf(o.socket, sizeof(o.socket), "%.4000s/%s", run, IPC_API_SOCKET_NAME);
	else
		snprintf(o.socket, sizeof(o.socket), "./var/run/%s", IPC_API_SOCKET_NAME);

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 's') {
			snprintf(o.socket, sizeof(o.socket), "%s", optarg);
		} else if (opt == 't') {
			if (!ctl_parse_u64("--timeout-ms", optarg, &o.timeout_ms) ||
			    o.timeout_ms == 0 || o.timeout_ms > 86400000)
				return CTL_EXIT_USAGE;
		} else if (opt == 'd') {
			if (!ctl_parse_u64("--duration", optarg, &o.duration))
				return CTL_EXIT_USAGE;
		} else if (opt == 'r') {
			o.reason = optarg;
		} else if (opt == 'h') {
			fputs(usage_text, stdout);
			return CTL_EXIT_OK;
		} else {
			fputs(usage_text, stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		ctl_error("breakers: no action given; use list, ban or reset");
		fputs(usage_text, stderr);
		return CTL_EXIT_USAGE;
	}
	return run_action(&o, argc - optind, argv + optind);
}
