#ifndef STEMEDB_PROTECT_H
#define STEMEDB_PROTECT_H

/* The per-agent protection layers of stemedb-api: circuit breaker, admission (proof of
 * work) and hourly quota, with their configuration and the hooks that the HTTP dispatch
 * and the write handlers call. docs/protection.md describes the behaviour. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admission.h"
#include "breaker.h"
#include "quota.h"
#include "stemedb/config.h"

struct http_call;
struct store;

struct protect_config {
	bool breaker_enabled;
	uint64_t breaker_failures;
	uint64_t breaker_window_seconds;
	uint64_t breaker_open_seconds;
	uint64_t breaker_max_agents;

	bool admission_enabled;
	struct admission_rules rules;
	uint64_t pow_validity_seconds;
	uint64_t pow_replay_capacity;
	uint64_t count_cache_seconds; /* age after which an agent's assertion count is reread */

	bool quota_enabled;
	uint64_t quota_tokens;
	uint64_t quota_window_seconds;
	uint64_t quota_max_agents;
	struct quota_costs costs;
};

#define PROTECT_CONFIG_OPTIONS 24

/* Appends the options of the protection layers to o and returns how many it added
 * (PROTECT_CONFIG_OPTIONS). */
size_t protect_config_options(struct protect_config *cfg, struct config_option *o);

/* Protection settings of one route. */
enum protect_class {
	PROTECT_NONE = 0,  /* no agent scope: health, metrics, documents, admission status */
	PROTECT_READ,      /* agent-scoped read, costs read tokens */
	PROTECT_QUERY,     /* lens read, costs query tokens plus lens tokens */
	PROTECT_WRITE,     /* signed write costing assert tokens, needs admission */
	PROTECT_WRITE_VOTE /* signed write costing vote tokens, needs admission */
};

struct protect_route {
	enum protect_class cls;
	uint8_t lenses; /* lenses a PROTECT_QUERY route evaluates */
};

struct protect;

/* Creates the layers and loads the stored circuit breakers from the "protect" column
 * family. Returns NULL with a message in err when reading them fails. */
struct protect *protect_open(const struct protect_config *cfg, struct store *store, char *err,
                             size_t err_size);
void protect_close(struct protect *p);

/* Registers the gauges and the rejection reasons of these layers. */
void protect_register_metrics(void);

/* Sets the circuit breaker gauges; called when /metrics is rendered. */
void protect_refresh_metrics(struct protect *p);

/* The dispatch calls these in order before the handler; each returns false after
 * replying. protect_http_identify reads X-Agent-Id (400 when malformed),
 * protect_http_breaker checks the agent's circuit breaker, and protect_http_admit runs
 * admission (write routes) and quota. Without X-Agent-Id the last two do nothing. */
bool protect_http_identify(struct http_call *call, struct protect_route route);
bool protect_http_breaker(struct http_call *call);
bool protect_http_admit(struct http_call *call, struct protect_route route);

/* Runs in a signed write handler after the body is parsed and before signatures are
 * verified. signers lists the agent ids the body names (signers[0] is the requesting
 * agent without X-Agent-Id); with single_record set, X-Agent-Id must be one of
 * them. Returns false after replying. */
bool protect_http_write(struct http_call *call, const uint8_t (*signers)[32], size_t signer_count,
                        bool single_record);

/* Records the outcome of a finished call in its agent's breaker. */
void protect_http_finish(struct http_call *call, int status);

/* Counts a stored assertion for each of its signers, for the admission difficulty. */
void protect_assertion_stored(struct protect *p, const uint8_t (*signers)[32], size_t count);

/* Whether any layer that needs the requesting agent is enabled. */
bool protect_any_enabled(const struct protect *p);

/* GET /v1/admission/status?agent_id=<hex>. */
void http_handle_admission_status(struct http_call *call);

/* ---- admin operations, for the IPC server ---- */

/* Copies the breakers that are not closed and idle; see breaker_list. */
size_t protect_breaker_list(struct protect *p, struct breaker_snapshot **out);

/* Bans an agent and stores the ban. Returns false when storing failed. */
bool protect_breaker_ban(struct protect *p, const uint8_t agent[32], uint64_t duration_seconds,
                         const char *reason, struct breaker_snapshot *snap);

/* Closes an agent's breaker and deletes its stored state. *found is true when the
 * agent had a breaker. Returns false when storing failed. */
bool protect_breaker_reset(struct protect *p, const uint8_t agent[32], bool *found);

#endif
