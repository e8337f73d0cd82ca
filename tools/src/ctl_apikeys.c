/* `stemedb-ctl keys`: creates, lists and revokes the API keys of stemedb-api over
 * api.sock, and generates a key text for STEMEDB_ROOT_API_KEY. */

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "stemedb/hex.h"
#include "stemedb/ipc.h"

#define KEY_ID_LEN     8
#define KEY_SECRET_LEN 32
#define AGENT_ID_LEN   32

static const char keys_help[] =
        "usage: stemedb-ctl keys [--socket PATH] [--timeout-ms N] COMMAND [OPTIONS]\n"
        "\n"
        "Manages the API keys of stemedb-api through api.sock, so it runs on the node as a\n"
        "user that may open that socket.\n"
        "\n"
        "Commands:\n"
        "  create --scopes LIST [--name NAME] [--agent AGENT_ID]\n"
        "            create a key; LIST is a comma-separated set of read, write and admin;\n"
        "            AGENT_ID (64 hex digits) binds the key to one agent. Prints the key\n"
        "            as JSON with the secret in \"api_key\": it is shown only this once\n"
        "  list      print every key (id, name, scopes, agent, created, revoked), one\n"
        "            JSON object per line; secrets and hashes are never shown\n"
        "  revoke ID revoke the key with this 16-hex-digit id; it is rejected from the\n"
        "            next request on\n"
        "  generate  print a new random key text to use as STEMEDB_ROOT_API_KEY; it\n"
        "            contacts no server\n"
        "\n"
        "Options:\n"
        "  --socket PATH     api.sock (default $STEMEDB_RUN_DIR/api.sock, else\n"
        "                    ./var/run/api.sock)\n"
        "  --timeout-ms N    deadline of the call in milliseconds (default 5000)\n";

struct keys_opts {
	char socket[4096];
	uint32_t timeout_ms;
};

static void print_json(json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);

	if (text == NULL)
		abort();
	printf("%s\n", text);
	fflush(stdout);
	free(text);
	json_decref(obj);
}

static json_t *key_json(const Stemedb__Ipc__V1__ApiKeyInfo *info)
{
	json_t *scopes = json_array();

	for (size_t i = 0; i < info->n_scopes; i++)
		json_array_append_new(scopes, json_string(info->scopes[i]));
	return json_pack("{s:s, s:s, s:o, s:o, s:I, s:I, s:b}", "id", info->id, "name", info->name,
	                 "scopes", scopes, "agent_id",
	                 info->agent_id != NULL && info->agent_id[0] != '\0'
	                         ? json_string(info->agent_id)
	                         : json_null(),
	                 "created_unix_ms", (json_int_t)info->created_unix_ms, "revoked_unix_ms",
	                 (json_int_t)info->revoked_unix_ms, "root", info->root);
}

/* Sends request and returns the reply, or NULL after printing why the call failed. */
static ipc_envelope *keys_call(const struct keys_opts *o, const char *name, ipc_envelope *request,
                               ipc_body_case expected)
{
	struct ipc_client_options options = {.socket_path = o->socket};
	struct ipc_client *c = ipc_client_new(&options);
	Stemedb__Ipc__V1__ErrorCode code;
	ipc_envelope *reply = NULL;
	enum ipc_result r;
	char err[512];

	r = ipc_client_call(c, request, expected, o->timeout_ms, &reply, &code, err, sizeof(err));
	ipc_client_free(c);
	if (r != IPC_OK) {
		ctl_error("keys %s on %s failed: %s: %s", name, o->socket, ipc_result_name(r), err);
		return NULL;
	}
	return reply;
}

static int keys_generate(void)
{
	uint8_t id[KEY_ID_LEN], secret[KEY_SECRET_LEN];
	char id_hex[2 * KEY_ID_LEN + 1], secret_hex[2 * KEY_SECRET_LEN + 1];

	if (sodium_init() < 0) {
		ctl_error("keys generate: sodium_init failed");
		return CTL_EXIT_USAGE;
	}
	randombytes_buf(id, sizeof(id));
	randombytes_buf(secret, sizeof(secret));
	hex_encode(id, sizeof(id), id_hex);
	hex_encode(secret, sizeof(secret), secret_hex);
	printf("sdb_%s_%s\n", id_hex, secret_hex);
	sodium_memzero(secret, sizeof(secret));
	sodium_memzero(secret_hex, sizeof(secret_hex));
	return CTL_EXIT_OK;
}

/* Splits LIST at commas into scopes. Returns the count, or 0 on an unknown name. */
static size_t split_scopes(char *list, char *scopes[3])
{
	size_t count = 0;
	char *save = NULL;

	for (char *s = strtok_r(list, ",", &save); s != NULL; s = strtok_r(NULL, ",", &save)) {
		if (count == 3 ||
		    (strcmp(s, "read") != 0 && strcmp(s, "write") != 0 && strcmp(s, "admin") != 0))
			return 0;
		scopes[count++] = s;
	}
	return count;
}

static int keys_create(const struct keys_opts *o, int argc, char **argv)
{
	static const struct option options[] = {
	        {"scopes", required_argument, NULL, 's'},
	        {"name", required_argument, NULL, 'n'},
	        {"agent", required_argument, NULL, 'a'},
	        {NULL, 0, NULL, 0},
	};
	Stemedb__Ipc__V1__CreateApiKeyRequest body = STEMEDB__IPC__V1__CREATE_API_KEY_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	char *scopes[3], *scope_list = NULL;
	uint8_t agent[AGENT_ID_LEN];
	ipc_envelope *reply;
	json_t *out;
	int opt;

	body.name = "";
	optind = 0; /* 0 makes glibc start a fresh scan after the outer one */
	while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		if (opt == 's') {
			scope_list = optarg;
		} else if (opt == 'n') {
			body.name = optarg;
		} else if (opt == 'a' && strlen(optarg) == 2 * AGENT_ID_LEN &&
		           hex_decode(optarg, strlen(optarg), agent, sizeof(agent))) {
			body.agent_id.data = agent;
			body.agent_id.len = sizeof(agent);
		} else {
			ctl_error("keys create: invalid option; --agent takes 64 hex digits\n%s",
			          keys_help);
			return CTL_EXIT_USAGE;
		}
	}
	if (scope_list == NULL || optind != argc ||
	    (body.n_scopes = split_scopes(scope_list, scopes)) == 0) {
		ctl_error("keys create: --scopes is required and takes a comma-separated set of "
		          "read, write and admin\n%s",
		          keys_help);
		return CTL_EXIT_USAGE;
	}
	body.scopes = scopes;
	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_CREATE_API_KEY_REQUEST;
	request.create_api_key_request = &body;
	reply = keys_call(o, "create", &request,
	                  STEMEDB__IPC__V1__ENVELOPE__BODY_CREATE_API_KEY_RESPONSE);
	if (reply == NULL)
		return CTL_EXIT_REJECTED;
	out = key_json(reply->create_api_key_response->key);
	json_object_set_new(out, "api_key", json_string(reply->create_api_key_response->api_key));
	print_json(out);
	ipc_envelope_free(reply);
	return CTL_EXIT_OK;
}

static int keys_list(const struct keys_opts *o)
{
	Stemedb__Ipc__V1__ListApiKeysRequest body = STEMEDB__IPC__V1__LIST_API_KEYS_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	ipc_envelope *reply;

	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_LIST_API_KEYS_REQUEST;
	request.list_api_keys_request = &body;
	reply = keys_call(o, "list", &request,
	                  STEMEDB__IPC__V1__ENVELOPE__BODY_LIST_API_KEYS_RESPONSE);
	if (reply == NULL)
		return CTL_EXIT_REJECTED;
	for (size_t i = 0; i < reply->list_api_keys_response->n_keys; i++)
		print_json(key_json(reply->list_api_keys_response->keys[i]));
	ipc_envelope_free(reply);
	return CTL_EXIT_OK;
}

static int keys_revoke(const struct keys_opts *o, const char *id)
{
	Stemedb__Ipc__V1__RevokeApiKeyRequest body = STEMEDB__IPC__V1__REVOKE_API_KEY_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	uint8_t bytes[KEY_ID_LEN];
	ipc_envelope *reply;
	json_t *out;

	if (strlen(id) != 2 * KEY_ID_LEN || !hex_decode(id, strlen(id), bytes, sizeof(bytes))) {
		ctl_error("keys revoke: the key id must be 16 hex digits, as `stemedb-ctl keys "
		          "list` prints it; got \"%.40s\"",
		          id);
		return CTL_EXIT_USAGE;
	}
	body.id = (char *)id;
	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_REVOKE_API_KEY_REQUEST;
	request.revoke_api_key_request = &body;
	reply = keys_call(o, "revoke", &request,
	                  STEMEDB__IPC__V1__ENVELOPE__BODY_REVOKE_API_KEY_RESPONSE);
	if (reply == NULL)
		return CTL_EXIT_REJECTED;
	out = key_json(reply->revoke_api_key_response->key);
	json_object_set_new(out, "status",
	                    json_string(reply->revoke_api_key_response->revoked_now
	                                        ? "revoked"
	                                        : "already_revoked"));
	print_json(out);
	ipc_envelope_free(reply);
	return CTL_EXIT_OK;
}

int ctl_cmd_apikeys(int argc, char **argv)
{
	static const struct option options[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct keys_opts o = {.timeout_ms = 5000};
	const char *run = getenv("STEMEDB_RUN_DIR");
	const char *command;
	char *end;
	int opt;

	if (run != NULL && run[0] != '\0')
		snprintf(o.socket, sizeof(o.socket), "%.4000s/%s", run, IPC_API_SOCKET_NAME);
	else
		snprintf(o.socket, sizeof(o.socket), "./var/run/%s", IPC_API_SOCKET_NAME);

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		if (opt == 's') {
			snprintf(o.socket, sizeof(o.socket), "%s", optarg);
		} else if (opt == 't') {
			unsigned long value = strtoul(optarg, &end, 10);

			if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || value == 0 ||
			    value > 86400000) {
				ctl_error("keys: --timeout-ms takes 1 to 86400000, got \"%.40s\"",
				          optarg);
				return CTL_EXIT_USAGE;
			}
			o.timeout_ms = (uint32_t)value;
		} else if (opt == 'h') {
			fputs(keys_help, stdout);
			return CTL_EXIT_OK;
		} else {
			fputs(keys_help, stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		ctl_error("keys: no command given\n%s", keys_help);
		return CTL_EXIT_USAGE;
	}
	command = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(command, "generate") == 0 && argc == 1)
		return keys_generate();
	if (strcmp(command, "list") == 0 && argc == 1)
		return keys_list(&o);
	if (strcmp(command, "revoke") == 0 && argc == 2)
		return keys_revoke(&o, argv[1]);
	if (strcmp(command, "create") == 0)
		return keys_create(&o, argc, argv);
	ctl_error("keys: unknown command or wrong arguments for \"%s\"\n%s", command, keys_help);
	return CTL_EXIT_USAGE;
}
