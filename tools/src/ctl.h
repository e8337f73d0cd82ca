#ifndef STEMEDB_CTL_H
#define STEMEDB_CTL_H

/* stemedb-ctl: shared declarations of the command modules. Exit statuses are the same
 * for every command: 0 success, 1 the server rejected something or reported a problem,
 * 2 usage, local or transport error. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/assertion.h"

#define CTL_EXIT_OK       0
#define CTL_EXIT_REJECTED 1
#define CTL_EXIT_USAGE    2

#define CTL_DEFAULT_URL "http://127.0.0.1:18180"

/* ctl_main.c: prints "stemedb-ctl: " and the message to stderr. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ctl_opts.c: option value parsers. Each prints an error naming the option, the value
 * and the accepted range, and returns false, when the value is invalid. */
bool ctl_parse_u64(const char *option, const char *text, uint64_t *out);
bool ctl_parse_size(const char *option, const char *text, size_t min, size_t max, size_t *out);
bool ctl_parse_confidence(const char *option, const char *text, double *out);
bool ctl_parse_hash(const char *option, const char *text, uint8_t out[STEMEDB_HASH_LEN]);
bool ctl_parse_source_class(const char *option, const char *text, uint8_t *out);
bool ctl_parse_lifecycle(const char *option, const char *text, uint8_t *out);
/* Reports a missing required option of command. */
bool ctl_require(const char *command, const char *option, const char *value);
/* Reports an unknown option or a missing option argument after getopt_long. */
int ctl_usage_error(const char *command);

/* ctl_keys.c */
struct ctl_key {
	uint8_t agent_id[STEMEDB_AGENT_ID_LEN];
	uint8_t secret_key[STEMEDB_SECRET_KEY_LEN];
};
/* ctl_assert.c: hashes and signs a (with its own timestamp as the signature time) and
 * returns its JSON form, or NULL when a is not encodable. */
json_t *ctl_sign_assertion(struct assertion *a, const struct ctl_key *key,
                           char hash_hex[2 * STEMEDB_HASH_LEN + 1]);
bool ctl_key_load(const char *path, struct ctl_key *key);
void ctl_key_wipe(struct ctl_key *key);
/* Returns a new object mapping agent id hex -> key file name (without ".key") for every
 * readable *.key file in dir, or NULL after printing an error. */
json_t *ctl_key_names(const char *dir);
int ctl_cmd_keygen(int argc, char **argv);

/* ctl_http.c: a libcurl client for one server. */
struct ctl_http;
struct ctl_response {
	long status;      /* HTTP status, 0 when no response arrived */
	json_t *body;     /* parsed body, NULL when empty or not JSON */
	bool transport;   /* true when the request failed before a response */
	bool retryable;   /* connection-level failure worth retrying */
	long retry_after; /* seconds of the Retry-After header, -1 when absent */
	char error[256];
};
struct ctl_http *ctl_http_new(const char *base_url);
void ctl_http_free(struct ctl_http *http);
const char *ctl_http_base_url(const struct ctl_http *http);
/* Sets the signing agent, sent in X-Agent-Id on every request and used for the proofs
 * of work that the server's admission layer requests. */
void ctl_http_set_agent(struct ctl_http *http, const uint8_t agent[STEMEDB_AGENT_ID_LEN]);
/* Performs one request. body may be NULL. query is an already-encoded "a=b&c=d" or
 * NULL. Always fills resp; release it with ctl_response_free. With an agent set, a 428
 * gets a proof of work and the request is sent again. A 429 other than quota_exceeded
 * whose Retry-After is at most 120 s is waited out and retried, up to six attempts in
 * all. */
void ctl_http_request(struct ctl_http *http, const char *method, const char *path,
                      const char *query, const json_t *body, struct ctl_response *resp);
/* Appends name=value, percent-encoded, to the malloc'ed query string *query (NULL
 * at first); the caller frees it. */
void ctl_http_query_add(struct ctl_http *http, char **query, const char *name, const char *value);
void ctl_response_free(struct ctl_response *resp);
/* Prints a transport failure or an API error body and returns the exit status. */
int ctl_report_failure(const char *command, const struct ctl_response *resp);

/* Commands. http is owned by the caller. */
int ctl_cmd_assert(struct ctl_http *http, int argc, char **argv);
int ctl_cmd_query(struct ctl_http *http, int argc, char **argv);
int ctl_cmd_skeptic(struct ctl_http *http, int argc, char **argv);
int ctl_cmd_health(struct ctl_http *http, int argc, char **argv);
int ctl_cmd_import(struct ctl_http *http, int argc, char **argv);
/* ctl_breakers.c: works over api.sock, not HTTP. */
int ctl_cmd_breakers(int argc, char **argv);

/* ctl_quarantine.c: list, approve or reject quarantined assertions over api.sock. */
int ctl_cmd_quarantine(int argc, char **argv);

/* ctl_format.c: shared output helpers. */
/* Writes {"type","value"} as readable text: "Sucre", 1098581, true, ->ref. */
void ctl_format_value(const json_t *object, char *out, size_t out_size);
/* Prints json to stdout, indented, followed by a newline. */
void ctl_print_json(const json_t *json);

/* ctl_progress.c: a progress line on stderr, drawn only when stderr is a terminal. */
struct ctl_progress {
	bool enabled;
	size_t total;
	double start;
	double last_draw;
};
void ctl_progress_start(struct ctl_progress *p, size_t total, bool enabled);
/* Redraws at most ten times a second unless force is true. */
void ctl_progress_update(struct ctl_progress *p, size_t done, bool force);
void ctl_progress_finish(struct ctl_progress *p, size_t done);
double ctl_now_seconds(void);

/* `stemedb-ctl keys`: API keys of stemedb-api over api.sock (ctl_apikeys.c). */
int ctl_cmd_apikeys(int argc, char **argv);

#endif
