/* API key calls of api.sock, used by the gateway's admin endpoints and stemedb-ctl. */
#include "ipc_keys.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"

#define BODY(name) STEMEDB__IPC__V1__ENVELOPE__BODY_##name
#define ERR(name)  STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_##name

/* Protobuf view of one key. The strings point into the holder, which must outlive the
 * reply. */
struct key_info_holder {
	Stemedb__Ipc__V1__ApiKeyInfo info;
	char id[API_KEY_ID_HEX_LEN + 1];
	char agent[2 * STEMEDB_AGENT_ID_LEN + 1];
	char name[API_KEY_NAME_MAX + 1];
	char *scopes[3];
};

static void key_info_fill(struct key_info_holder *h, const struct api_key *key)
{
	static const char *const names[] = {"read", "write", "admin"};
	static const unsigned bits[] = {API_KEY_SCOPE_READ, API_KEY_SCOPE_WRITE,
	                                API_KEY_SCOPE_ADMIN};

	stemedb__ipc__v1__api_key_info__init(&h->info);
	hex_encode(key->id, API_KEY_ID_LEN, h->id);
	h->agent[0] = '\0';
	if (key->agent_bound)
		hex_encode(key->agent, STEMEDB_AGENT_ID_LEN, h->agent);
	snprintf(h->name, sizeof(h->name), "%s", key->name);
	h->info.n_scopes = 0;
	for (size_t i = 0; i < 3; i++) {
		if ((key->scopes & bits[i]) != 0)
			h->scopes[h->info.n_scopes++] = (char *)names[i];
	}
	h->info.id = h->id;
	h->info.name = h->name;
	h->info.scopes = h->scopes;
	h->info.agent_id = h->agent;
	h->info.created_unix_ms = key->created_ms;
	h->info.revoked_unix_ms = key->revoked_ms;
	h->info.root = key->root;
}

static void create_key(struct ipc_conn *conn, const ipc_envelope *request)
{
	const Stemedb__Ipc__V1__CreateApiKeyRequest *req = request->create_api_key_request;
	Stemedb__Ipc__V1__CreateApiKeyResponse res =
	        STEMEDB__IPC__V1__CREATE_API_KEY_RESPONSE__INIT;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	struct key_info_holder holder;
	struct api_key key;
	char text[API_KEY_TEXT_LEN + 1], err[256];
	unsigned scopes = 0;
	const char *name = req->name != NULL ? req->name : "";

	for (size_t i = 0; i < req->n_scopes; i++) {
		unsigned scope;

		if (!api_key_scopes_parse(req->scopes[i], &scope)) {
			ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT),
			                     "scope \"%.40s\" is unknown; use read, write or admin",
			                     req->scopes[i]);
			return;
		}
		scopes |= scope;
	}
	if (scopes == 0 || strlen(name) > API_KEY_NAME_MAX ||
	    (req->agent_id.len != 0 && req->agent_id.len != STEMEDB_AGENT_ID_LEN)) {
		ipc_conn_reply_error(
		        conn, request->request_id, ERR(INVALID_ARGUMENT),
		        "send at least one scope, a name of at most %d bytes and an "
		        "agent_id of 0 or 32 bytes (got %zu scopes, %zu and %zu bytes)",
		        API_KEY_NAME_MAX, req->n_scopes, strlen(name), req->agent_id.len);
		return;
	}
	if (!auth_create_key(name, scopes, req->agent_id.len != 0 ? req->agent_id.data : NULL, &key,
	                     text, err, sizeof(err))) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL), "%s", err);
		return;
	}
	key_info_fill(&holder, &key);
	res.key = &holder.info;
	res.api_key = text;
	reply.request_id = request->request_id;
	reply.body_case = BODY(CREATE_API_KEY_RESPONSE);
	reply.create_api_key_response = &res;
	ipc_conn_reply(conn, &reply);
	sodium_memzero(text, sizeof(text));
}

static void list_keys(struct ipc_conn *conn, uint64_t request_id)
{
	Stemedb__Ipc__V1__ListApiKeysResponse res = STEMEDB__IPC__V1__LIST_API_KEYS_RESPONSE__INIT;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	size_t count;
	struct api_key *keys = auth_list_keys(&count);
	struct key_info_holder *holders = calloc(count > 0 ? count : 1, sizeof(*holders));
	Stemedb__Ipc__V1__ApiKeyInfo **infos = calloc(count > 0 ? count : 1, sizeof(*infos));

	if (holders == NULL || infos == NULL)
		abort();
	for (size_t i = 0; i < count; i++) {
		key_info_fill(&holders[i], &keys[i]);
		infos[i] = &holders[i].info;
	}
	res.n_keys = count;
	res.keys = infos;
	reply.request_id = request_id;
	reply.body_case = BODY(LIST_API_KEYS_RESPONSE);
	reply.list_api_keys_response = &res;
	ipc_conn_reply(conn, &reply);
	free(infos);
	free(holders);
	free(keys);
}

static void revoke_key(struct ipc_conn *conn, const ipc_envelope *request)
{
	const char *id_hex = request->revoke_api_key_request->id;
	Stemedb__Ipc__V1__RevokeApiKeyResponse res =
	        STEMEDB__IPC__V1__REVOKE_API_KEY_RESPONSE__INIT;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	struct key_info_holder holder;
	uint8_t id[API_KEY_ID_LEN];
	struct api_key key;
	int result;

	if (id_hex == NULL || strlen(id_hex) != API_KEY_ID_HEX_LEN ||
	    !hex_decode(id_hex, API_KEY_ID_HEX_LEN, id, sizeof(id))) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT),
		                     "id must be the 16 hex digits of a key id");
		return;
	}
	result = auth_revoke_key(id, &key);
	if (result == -1) {
		ipc_conn_reply_error(conn, request->request_id, ERR(NOT_FOUND),
		                     "no API key has the id %s", id_hex);
		return;
	}
	if (result == -2) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL),
		                     "storing the revocation of API key %s failed; see the "
		                     "stemedb-api log",
		                     id_hex);
		return;
	}
	key_info_fill(&holder, &key);
	res.key = &holder.info;
	res.revoked_now = result == 1;
	reply.request_id = request->request_id;
	reply.body_case = BODY(REVOKE_API_KEY_RESPONSE);
	reply.revoke_api_key_response = &res;
	ipc_conn_reply(conn, &reply);
}

static void verify_key(struct ipc_conn *conn, const ipc_envelope *request)
{
	const char *text = request->verify_api_key_request->api_key;
	Stemedb__Ipc__V1__VerifyApiKeyResponse res =
	        STEMEDB__IPC__V1__VERIFY_API_KEY_RESPONSE__INIT;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	struct key_info_holder holder;
	struct api_key key;

	res.valid = text != NULL && auth_verify_text(text, strlen(text), &key);
	if (res.valid) {
		key_info_fill(&holder, &key);
		res.key = &holder.info;
	}
	reply.request_id = request->request_id;
	reply.body_case = BODY(VERIFY_API_KEY_RESPONSE);
	reply.verify_api_key_response = &res;
	ipc_conn_reply(conn, &reply);
}

bool ipc_keys_handle(struct ipc_conn *conn, const ipc_envelope *request)
{
	switch (request->body_case) {
	case BODY(CREATE_API_KEY_REQUEST):
		create_key(conn, request);
		return true;
	case BODY(LIST_API_KEYS_REQUEST):
		list_keys(conn, request->request_id);
		return true;
	case BODY(REVOKE_API_KEY_REQUEST):
		revoke_key(conn, request);
		return true;
	case BODY(VERIFY_API_KEY_REQUEST):
		verify_key(conn, request);
		return true;
	default:
		return false;
	}
}
