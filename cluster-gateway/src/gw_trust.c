/* POST /v1/admin/trust/outcome: an admin records whether an agent's claims proved
 * accurate. The gateway signs a trust outcome record with the operator key of
 * STEMEDB_ADMIN_SIGNING_KEY_FILE; stemedb-api checks the signer against its
 * STEMEDB_TRUST_AUTHORITY_KEYS, writes the record to its WAL and returns the agent's
 * trust after it. */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_handlers.h"
#include "gw_http.h"
#include "gw_ipc.h"
#include "gw_job.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"
#include "stemedb/records.h"

#define TRUST_AGENT_ID_LEN STEMEDB_AGENT_ID_LEN
#define TRUST_NOTE_MAX     STEMEDB_TRUST_NOTE_MAX

struct trust_job {
	struct gw_job job; /* first, so that a gw_job pointer is a trust_job pointer */
	uint8_t agent_id[TRUST_AGENT_ID_LEN];
	bool accurate;
	char note[TRUST_NOTE_MAX + 1];
	uint64_t timestamp;
	uint8_t signer[STEMEDB_AGENT_ID_LEN];
	uint8_t signature[STEMEDB_SIGNATURE_LEN];
	ipc_envelope *reply;
	struct gw_ipc_status status;
};

static void trust_work(struct gw_job *job)
{
	struct trust_job *t = (struct trust_job *)job;
	Stemedb__Ipc__V1__RecordTrustOutcomeRequest body =
	        STEMEDB__IPC__V1__RECORD_TRUST_OUTCOME_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;

	body.agent_id.data = t->agent_id;
	body.agent_id.len = sizeof(t->agent_id);
	body.accurate = t->accurate;
	body.note = t->note;
	body.timestamp = t->timestamp;
	body.signer.data = t->signer;
	body.signer.len = sizeof(t->signer);
	body.signature.data = t->signature;
	body.signature.len = sizeof(t->signature);
	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_RECORD_TRUST_OUTCOME_REQUEST;
	request.record_trust_outcome_request = &body;
	t->reply = gw_ipc_call(job->request->gw->config, "record_trust_outcome", &request,
	                       STEMEDB__IPC__V1__ENVELOPE__BODY_RECORD_TRUST_OUTCOME_RESPONSE,
	                       job->request->gw->config->ipc_timeout_ms, &t->status);
}

static void trust_finish(struct gw_job *job)
{
	struct trust_job *t = (struct trust_job *)job;
	const Stemedb__Ipc__V1__RecordTrustOutcomeResponse *res;
	char agent[2 * TRUST_AGENT_ID_LEN + 1];
	char id[2 * STEMEDB_HASH_LEN + 1];

	hex_encode(t->agent_id, sizeof(t->agent_id), agent);
	if (t->reply == NULL && t->status.result == IPC_ERR_REMOTE &&
	    t->status.remote_code == STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT) {
		log_error("stemedb-api rejected the trust outcome record for agent %s: %s", agent,
		          t->status.message);
		gw_reply_error(job->request, 500, "trust_outcome_rejected", NULL,
		               "stemedb-api rejected the signed outcome record: %s",
		               t->status.message);
		goto done;
	}
	if (t->reply == NULL) {
		log_warn("recording a trust outcome for agent %s failed: %s", agent,
		         t->status.message);
		gw_reply_error(job->request, 503, "unavailable", NULL,
		               "stemedb-api did not record the outcome: %s; retry the same request",
		               t->status.message);
		goto done;
	}
	res = t->reply->record_trust_outcome_response;
	hex_encode(res->outcome_id.data,
	           res->outcome_id.len < STEMEDB_HASH_LEN ? res->outcome_id.len : STEMEDB_HASH_LEN,
	           id);
	gw_reply_json(job->request, res->created ? 201 : 200,
	              json_pack("{s:s, s:s, s:s, s:I, s:f, s:s}", "status",
	                        res->created ? "created" : "exists", "agent_id", agent, "outcome",
	                        t->accurate ? "accurate" : "inaccurate", "timestamp",
	                        (json_int_t)t->timestamp, "trust", res->trust, "outcome_id", id));
done:
	if (t->reply != NULL)
		ipc_envelope_free(t->reply);
	free(t);
}

/* Fills t from the body; replies 400 and returns false on the first invalid field. */
static bool parse_outcome(struct gw_request *r, json_t *body, struct trust_job *t)
{
	static const char *const known[] = {"agent_id", "outcome", "note", "timestamp", NULL};
	const char *agent = json_string_value(json_object_get(body, "agent_id"));
	const char *outcome = json_string_value(json_object_get(body, "outcome"));
	json_t *note = json_object_get(body, "note");
	json_t *timestamp = json_object_get(body, "timestamp");

	if (!gw_reject_unknown_fields(r, body, known))
		return false;
	if (agent == NULL || !hex_decode(agent, strlen(agent), t->agent_id, sizeof(t->agent_id))) {
		gw_reply_error(r, 400, "invalid_field", "agent_id",
		               "agent_id must be the 64 hex characters of an agent's public key");
		return false;
	}
	if (outcome == NULL ||
	    (strcmp(outcome, "accurate") != 0 && strcmp(outcome, "inaccurate") != 0)) {
		gw_reply_error(r, 400, "invalid_field", "outcome",
		               "outcome must be \"accurate\" or \"inaccurate\"");
		return false;
	}
	t->accurate = strcmp(outcome, "accurate") == 0;
	if (note != NULL &&
	    (!json_is_string(note) || json_string_length(note) > TRUST_NOTE_MAX ||
	     memchr(json_string_value(note), 0, json_string_length(note)) != NULL)) {
		gw_reply_error(r, 400, "invalid_field", "note",
		               "note must be a string of at most %d bytes without NUL",
		               TRUST_NOTE_MAX);
		return false;
	}
	if (note != NULL)
		memcpy(t->note, json_string_value(note), json_string_length(note) + 1);
	t->timestamp = (uint64_t)time(NULL);
	if (timestamp != NULL) {
		if (!json_is_integer(timestamp) || json_integer_value(timestamp) < 0) {
			gw_reply_error(r, 400, "invalid_field", "timestamp",
			               "timestamp must be Unix seconds as a non-negative integer");
			return false;
		}
		t->timestamp = (uint64_t)json_integer_value(timestamp);
	}
	return true;
}

/* Signs the outcome as a trust outcome record (docs/formats.md, type 0x07). */
static bool sign_outcome(const struct gw_config *cfg, struct trust_job *t)
{
	struct record rec;
	uint8_t id[STEMEDB_HASH_LEN];
	bool ok;

	record_init(&rec, STEMEDB_RECORD_TRUST_OUTCOME);
	memcpy(rec.u.trust_outcome.agent_id, t->agent_id, sizeof(t->agent_id));
	rec.u.trust_outcome.accurate = t->accurate;
	rec.u.trust_outcome.timestamp = t->timestamp;
	record_set_string(&rec.u.trust_outcome.note, &rec.u.trust_outcome.note_len, t->note,
	                  strlen(t->note));
	ok = record_id(&rec, id) && record_sign(&rec, id, cfg->admin_signing_key);
	if (ok) {
		memcpy(t->signer, rec.signers[0].agent_id, sizeof(t->signer));
		memcpy(t->signature, rec.signers[0].signature, sizeof(t->signature));
	}
	record_free(&rec);
	return ok;
}

void gw_handle_admin_trust_outcome(struct gw_request *r)
{
	json_t *body;
	struct trust_job *t;

	if (!r->gw->config->has_admin_signing_key) {
		log_warn("rejected a trust outcome: STEMEDB_ADMIN_SIGNING_KEY_FILE is not set");
		gw_reply_error(
		        r, 503, "signing_key_missing", NULL,
		        "the gateway has no key to sign trust outcomes; set "
		        "STEMEDB_ADMIN_SIGNING_KEY_FILE to a `stemedb-ctl keygen` file and add "
		        "its public key to STEMEDB_TRUST_AUTHORITY_KEYS of stemedb-api");
		return;
	}
	body = gw_read_json_object(r);
	if (body == NULL)
		return;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		abort();
	if (!parse_outcome(r, body, t)) {
		json_decref(body);
		free(t);
		return;
	}
	json_decref(body);
	if (!sign_outcome(r->gw->config, t)) {
		free(t);
		log_error("signing a trust outcome record failed");
		gw_reply_error(r, 500, "internal_error", NULL,
		               "signing the trust outcome record failed; see the gateway log");
		return;
	}

	t->job.request = r;
	t->job.work = trust_work;
	t->job.finish = trust_finish;
	if (!gw_job_start(&t->job)) {
		free(t);
		gw_reply_error(r, 503, "unavailable", NULL,
		               "the gateway has %d calls to stemedb-api open already; retry later",
		               GW_JOBS_MAX);
	}
}
