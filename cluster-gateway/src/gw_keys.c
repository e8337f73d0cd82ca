/* Admin endpoints for the API keys of stemedb-api, and the admin-scope key check of
 * every admin endpoint when STEMEDB_AUTH_ENABLED is true. stemedb-api owns the keys,
 * and the gateway reaches it over api.sock on a job thread. */

#include <event2/http.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "gw_handlers.h"
#include "gw_http.h"
#include "gw_ipc.h"
#include "gw_job.h"
#include "gw_metrics.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"

#define KEY_ID_HEX_LEN   16
#define KEY_NAME_MAX     128
#define KEY_TEXT_MAX     128
#define AGENT_ID_LEN     32
#define KEY_SCOPES_MAX   3
#define KEY_ROUTE_PREFIX "/v1/admin/api-keys/"

enum key_call { KEY_CALL_VERIFY, KEY_CALL_CREATE, KEY_CALL_LIST, KEY_CALL_REVOKE };

struct key_job {
	struct gw_job job; /* first, so that a gw_job pointer is a key_job pointer */
	enum key_call call;
	char api_key[KEY_TEXT_MAX + 1]; /* verify: the presented key, wiped after use */
	char name[KEY_NAME_MAX + 1];
	char *scopes[KEY_SCOPES_MAX];
	size_t scope_count;
	uint8_t agent_id[AGENT_ID_LEN];
	bool agent_bound;
	char id[KEY_ID_HEX_LEN + 1];
	ipc_envelope *reply;
	struct gw_ipc_status status;
};

static const char *const call_names[] = {"verify_api_key", "create_api_key", "list_api_keys",
                                         "revoke_api_key"};

static void key_work(struct gw_job *job)
{
	struct key_job *k = (struct key_job *)job;
	const struct gw_config *cfg = job->request->gw->config;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__VerifyApiKeyRequest verify =
	        STEMEDB__IPC__V1__VERIFY_API_KEY_REQUEST__INIT;
	Stemedb__Ipc__V1__CreateApiKeyRequest create =
	        STEMEDB__IPC__V1__CREATE_API_KEY_REQUEST__INIT;
	Stemedb__Ipc__V1__ListApiKeysRequest list = STEMEDB__IPC__V1__LIST_API_KEYS_REQUEST__INIT;
	Stemedb__Ipc__V1__RevokeApiKeyRequest revoke =
	        STEMEDB__IPC__V1__REVOKE_API_KEY_REQUEST__INIT;
	ipc_body_case expected;

	switch (k->call) {
	case KEY_CALL_VERIFY:
		verify.api_key = k->api_key;
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_VERIFY_API_KEY_REQUEST;
		request.verify_api_key_request = &verify;
		expected = STEMEDB__IPC__V1__ENVELOPE__BODY_VERIFY_API_KEY_RESPONSE;
		break;
	case KEY_CALL_CREATE:
		create.name = k->name;
		create.n_scopes = k->scope_count;
		create.scopes = k->scopes;
		if (k->agent_bound) {
			create.agent_id.data = k->agent_id;
			create.agent_id.len = sizeof(k->agent_id);
		}
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_CREATE_API_KEY_REQUEST;
		request.create_api_key_request = &create;
		expected = STEMEDB__IPC__V1__ENVELOPE__BODY_CREATE_API_KEY_RESPONSE;
		break;
	case KEY_CALL_LIST:
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_LIST_API_KEYS_REQUEST;
		request.list_api_keys_request = &list;
		expected = STEMEDB__IPC__V1__ENVELOPE__BODY_LIST_API_KEYS_RESPONSE;
		break;
	default:
		revoke.id = k->id;
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_REVOKE_API_KEY_REQUEST;
		request.revoke_api_key_request = &revoke;
		expected = STEMEDB__IPC__V1__ENVELOPE__BODY_REVOKE_API_KEY_RESPONSE;
		break;
	}
	k->reply = gw_ipc_call(cfg, call_names[k->call], &request, expected, cfg->ipc_timeout_ms,
	                       &k->status);
	sodium_memzero(k->api_key, sizeof(k->api_key));
}

static json_t *key_json(const Stemedb__Ipc__V1__ApiKeyInfo *info)
{
	json_t *scopes = json_array();
	char created[32], revoked[32];
	json_t *obj;

	for (size_t i = 0; i < info->n_scopes; i++)
		json_array_append_new(scopes, json_string(info->scopes[i]));
	gw_format_unix_ms(info->created_unix_ms, created);
	obj = json_pack("{s:s, s:s, s:o, s:s, s:b}", "id", info->id, "name", info->name, "scopes",
	                scopes, "created_at", created, "root", info->root);
	json_object_set_new(obj, "agent_id",
	                    info->agent_id != NULL && info->agent_id[0] != '\0'
	                            ? json_string(info->agent_id)
	                            : json_null());
	if (info->revoked_unix_ms != 0) {
		gw_format_unix_ms(info->revoked_unix_ms, revoked);
		json_object_set_new(obj, "revoked_at", json_string(revoked));
	} else {
		json_object_set_new(obj, "revoked_at", json_null());
	}
	return obj;
}

/* Replies to a failed IPC call: 404 for an unknown key, 400 for a rejected argument,
 * else 503. */
static void reply_ipc_failure(struct key_job *k)
{
	struct gw_request *r = k->job.request;

	if (k->status.result == IPC_ERR_REMOTE &&
	    k->status.remote_code == STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND) {
		gw_reply_error(r, 404, "not_found", NULL, "%s; list the keys with GET %.40s",
		               k->status.message, "/v1/admin/api-keys");
		return;
	}
	if (k->status.result == IPC_ERR_REMOTE &&
	    k->status.remote_code == STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT) {
		gw_reply_error(r, 400, "invalid_field", NULL, "%s", k->status.message);
		return;
	}
	log_warn("%s failed: %s", call_names[k->call], k->status.message);
	gw_reply_error(r, 503, "unavailable", NULL, "stemedb-api did not answer %s: %s; retry",
	               call_names[k->call], k->status.message);
}

static void verify_finish(struct key_job *k)
{
	struct gw_request *r = k->job.request;
	const Stemedb__Ipc__V1__VerifyApiKeyResponse *res = k->reply->verify_api_key_response;
	const char *values[1];
	bool admin = false;

	if (res->valid && res->key != NULL) {
		for (size_t i = 0; i < res->key->n_scopes; i++)
			admin = admin || strcmp(res->key->scopes[i], "admin") == 0;
	}
	if (res->valid && admin) {
		gw_dispatch(r);
		return;
	}
	values[0] = res->valid ? "insufficient_scope" : "invalid_api_key";
	metric_inc(metrics_family_child(gw_metrics.auth_failures, values));
	if (!res->valid) {
		gw_reply_error(r, 401, "invalid_api_key", "X-API-Key",
		               "the X-API-Key header is not a valid API key: it is malformed, "
		               "unknown or revoked");
		return;
	}
	log_warn("rejected an admin request with API key %s: the key lacks the admin scope",
	         res->key->id);
	gw_reply_error(r, 403, "insufficient_scope", "X-API-Key",
	               "API key %s lacks the admin scope that /v1/admin/ endpoints need",
	               res->key->id);
}

static void key_finish(struct gw_job *job)
{
	struct key_job *k = (struct key_job *)job;
	struct gw_request *r = job->request;
	json_t *list;

	if (k->reply == NULL) {
		reply_ipc_failure(k);
		goto done;
	}
	switch (k->call) {
	case KEY_CALL_VERIFY:
		verify_finish(k);
		break;
	case KEY_CALL_CREATE: {
		json_t *obj = key_json(k->reply->create_api_key_response->key);

		json_object_set_new(obj, "api_key",
		                    json_string(k->reply->create_api_key_response->api_key));
		gw_reply_json(r, 201, obj);
		break;
	}
	case KEY_CALL_LIST:
		list = json_array();
		for (size_t i = 0; i < k->reply->list_api_keys_response->n_keys; i++)
			json_array_append_new(list,
			                      key_json(k->reply->list_api_keys_response->keys[i]));
		gw_reply_json(r, 200, json_pack("{s:o}", "keys", list));
		break;
	default: {
		const Stemedb__Ipc__V1__RevokeApiKeyResponse *res =
		        k->reply->revoke_api_key_response;
		json_t *obj = key_json(res->key);

		json_object_set_new(obj, "status",
		                    json_string(res->revoked_now ? "revoked" : "already_revoked"));
		gw_reply_json(r, 200, obj);
		break;
	}
	}
done:
	if (k->reply != NULL) {
		/* The create reply carries the secret: wipe it before the buffer is freed. */
		if (k->call == KEY_CALL_CREATE &&
		    k->reply->create_api_key_response->api_key != NULL)
			sodium_memzero(k->reply->create_api_key_response->api_key,
			               strlen(k->reply->create_api_key_response->api_key));
		ipc_envelope_free(k->reply);
	}
	for (size_t i = 0; i < k->scope_count; i++)
		free(k->scopes[i]);
	free(k);
}

static struct key_job *key_job_new(struct gw_request *r, enum key_call call)
{
	struct key_job *k = calloc(1, sizeof(*k));

	if (k == NULL)
		abort();
	k->call = call;
	k->job.request = r;
	k->job.work = key_work;
	k->job.finish = key_finish;
	return k;
}

static void key_job_run(struct key_job *k)
{
	struct gw_request *r = k->job.request;

	if (gw_job_start(&k->job))
		return;
	for (size_t i = 0; i < k->scope_count; i++)
		free(k->scopes[i]);
	sodium_memzero(k->api_key, sizeof(k->api_key));
	free(k);
	gw_reply_error(r, 503, "unavailable", NULL,
	               "the gateway has %d calls to stemedb-api open already; retry later",
	               GW_JOBS_MAX);
}

void gw_check_admin_api_key(struct gw_request *r, const char *api_key)
{
	struct key_job *k;
	size_t len = strlen(api_key);

	if (len > KEY_TEXT_MAX) {
		gw_reply_error(r, 401, "invalid_api_key", "X-API-Key",
		               "the X-API-Key header has %zu characters, more than any API key",
		               len);
		return;
	}
	k = key_job_new(r, KEY_CALL_VERIFY);
	memcpy(k->api_key, api_key, len + 1);
	key_job_run(k);
}

void gw_handle_admin_api_keys_list(struct gw_request *r)
{
	key_job_run(key_job_new(r, KEY_CALL_LIST));
}

/* Fills the name, scopes and agent of k from body. Replies 400 and returns false on
 * the first invalid field. */
static bool parse_create(struct gw_request *r, json_t *body, struct key_job *k)
{
	static const char *const known[] = {"name", "scopes", "agent_id", NULL};
	json_t *name = json_object_get(body, "name");
	json_t *scopes = json_object_get(body, "scopes");
	json_t *agent = json_object_get(body, "agent_id");
	size_t index;
	json_t *scope;

	if (!gw_reject_unknown_fields(r, body, known))
		return false;
	if (name != NULL &&
	    (!json_is_string(name) || json_string_length(name) > KEY_NAME_MAX ||
	     memchr(json_string_value(name), 0, json_string_length(name)) != NULL)) {
		gw_reply_error(r, 400, "invalid_field", "name",
		               "name must be a string of at most %d bytes without NUL",
		               KEY_NAME_MAX);
		return false;
	}
	if (name != NULL)
		memcpy(k->name, json_string_value(name), json_string_length(name) + 1);
	if (!json_is_array(scopes) || json_array_size(scopes) == 0 ||
	    json_array_size(scopes) > KEY_SCOPES_MAX) {
		gw_reply_error(r, 400, "invalid_field", "scopes",
		               "scopes must be a non-empty array of \"read\", \"write\" and "
		               "\"admin\"");
		return false;
	}
	json_array_foreach(scopes, index, scope)
	{
		const char *text = json_string_value(scope);

		if (text == NULL || (strcmp(text, "read") != 0 && strcmp(text, "write") != 0 &&
		                     strcmp(text, "admin") != 0)) {
			gw_reply_error(r, 400, "invalid_field", "scopes",
			               "scopes[%zu] must be \"read\", \"write\" or \"admin\"",
			               index);
			return false;
		}
		k->scopes[k->scope_count] = strdup(text);
		if (k->scopes[k->scope_count] == NULL)
			abort();
		k->scope_count++;
	}
	if (agent != NULL && !json_is_null(agent)) {
		const char *text = json_string_value(agent);

		if (text == NULL || strlen(text) != 2 * AGENT_ID_LEN ||
		    !hex_decode(text, strlen(text), k->agent_id, sizeof(k->agent_id))) {
			gw_reply_error(
			        r, 400, "invalid_field", "agent_id",
			        "agent_id must be the 64 hex characters of an agent's public "
			        "key, or null");
			return false;
		}
		k->agent_bound = true;
	}
	return true;
}

void gw_handle_admin_api_keys_create(struct gw_request *r)
{
	json_t *body = gw_read_json_object(r);
	struct key_job *k;

	if (body == NULL)
		return;
	k = key_job_new(r, KEY_CALL_CREATE);
	if (!parse_create(r, body, k)) {
		json_decref(body);
		for (size_t i = 0; i < k->scope_count; i++)
			free(k->scopes[i]);
		free(k);
		return;
	}
	json_decref(body);
	key_job_run(k);
}

void gw_handle_admin_api_key_revoke(struct gw_request *r)
{
	const char *id = r->path + strlen(KEY_ROUTE_PREFIX);
	size_t id_len = strlen(id) - strlen("/revoke");
	uint8_t bytes[KEY_ID_HEX_LEN / 2];
	struct key_job *k;

	if (id_len != KEY_ID_HEX_LEN || !hex_decode(id, id_len, bytes, sizeof(bytes))) {
		gw_reply_error(r, 400, "invalid_parameter", "id",
		               "the key id in the path must be 16 hex digits, as GET "
		               "/v1/admin/api-keys lists it");
		return;
	}
	k = key_job_new(r, KEY_CALL_REVOKE);
	hex_encode(bytes, sizeof(bytes), k->id);
	key_job_run(k);
}
