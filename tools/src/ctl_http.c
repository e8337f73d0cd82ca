/* HTTP client of stemedb-ctl (libcurl). One easy handle is reused for every request,
 * so a long import keeps its connection alive. */

#include <curl/curl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "stemedb/hex.h"
#include "stemedb/pow.h"

/* On a 2-core test machine over loopback a batch of 1,000 assertions took about 0.3 s.
 * A request still running after a minute therefore means a stuck node, and the
 * importer retries it. */
#define CTL_HTTP_CONNECT_TIMEOUT_S 5L
#define CTL_HTTP_TIMEOUT_S         60L
/* Responses larger than this are not API responses; the limit protects memory. */
#define CTL_HTTP_MAX_RESPONSE (64u * 1024u * 1024u)

/* Maximum attempts of one request while the server requests a proof of work or a
 * retry, and the maximum Retry-After that the client waits for. A quota window lasts an
 * hour, so a quota_exceeded reply ends the request instead of waiting. */
#define CTL_PROTECT_ATTEMPTS  6
#define CTL_RETRY_AFTER_MAX_S 120L
#define CTL_POW_ATTEMPTS_MAX  (1ull << 40)

struct ctl_http {
	CURL *curl;
	char *base_url;
	bool has_agent;
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
};

struct response_buffer {
	char *data;
	size_t len;
	bool too_large;
};

struct ctl_http *ctl_http_new(const char *base_url)
{
	struct ctl_http *http;
	size_t len = strlen(base_url);

	if (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0) {
		ctl_error("invalid --url \"%s\": it must start with http:// or https://, "
		          "e.g. %s",
		          base_url, CTL_DEFAULT_URL);
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		ctl_error("curl_global_init failed; check the libcurl installation");
		return NULL;
	}

	http = calloc(1, sizeof(*http));
	if (http == NULL)
		abort();
	while (len > 0 && base_url[len - 1] == '/')
		len--;
	http->base_url = strndup(base_url, len);
	http->curl = curl_easy_init();
	if (http->curl == NULL) {
		ctl_error("curl_easy_init failed");
		ctl_http_free(http);
		return NULL;
	}
	return http;
}

void ctl_http_free(struct ctl_http *http)
{
	if (http == NULL)
		return;
	if (http->curl != NULL)
		curl_easy_cleanup(http->curl);
	free(http->base_url);
	free(http);
	curl_global_cleanup();
}

const char *ctl_http_base_url(const struct ctl_http *http)
{
	return http->base_url;
}

static size_t on_body(char *data, size_t size, size_t count, void *user)
{
	struct response_buffer *rb = user;
	size_t n = size * count;
	char *grown;

	if (rb->len + n > CTL_HTTP_MAX_RESPONSE) {
		rb->too_large = true;
		return 0;
	}
	grown = realloc(rb->data, rb->len + n + 1);
	if (grown == NULL)
		abort();
	rb->data = grown;
	memcpy(rb->data + rb->len, data, n);
	rb->len += n;
	rb->data[rb->len] = '\0';
	return n;
}

void ctl_http_query_add(struct ctl_http *http, char **query, const char *name, const char *value)
{
	char *escaped = curl_easy_escape(http->curl, value, 0);
	char *joined;
	int rc;

	if (escaped == NULL)
		abort();
	if (*query == NULL)
		rc = asprintf(&joined, "%s=%s", name, escaped);
	else
		rc = asprintf(&joined, "%s&%s=%s", *query, name, escaped);
	if (rc < 0)
		abort();
	curl_free(escaped);
	free(*query);
	*query = joined;
}

/* Connection-level failures that a later attempt may get past. */
static bool curl_code_retryable(CURLcode code)
{
	switch (code) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return true;
	default:
		return false;
	}
}

/* Stores the Retry-After seconds of a response in the ctl_response. */
static size_t on_header(char *data, size_t size, size_t count, void *user)
{
	struct ctl_response *resp = user;
	size_t n = size * count;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		char value[32];
		size_t len = n - (sizeof(name) - 1);

		if (len >= sizeof(value))
			len = sizeof(value) - 1;
		memcpy(value, data + sizeof(name) - 1, len);
		value[len] = '\0';
		resp->retry_after = strtol(value, NULL, 10);
	}
	return n;
}

static void set_request_options(struct ctl_http *http, const char *method, const char *url,
                                const char *payload, struct curl_slist *headers,
                                struct response_buffer *rb, char *errbuf)
{
	CURL *c = http->curl;

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CTL_HTTP_CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, CTL_HTTP_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, rb);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "stemedb-ctl");
	if (payload != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
	}
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
}

static void parse_response_body(struct response_buffer *rb, struct ctl_response *resp)
{
	json_error_t jerr;

	if (rb->len == 0)
		return;
	resp->body = json_loadb(rb->data, rb->len, 0, &jerr);
	if (resp->body == NULL)
		snprintf(resp->error, sizeof(resp->error),
		         "response with status %ld is not JSON: %s", resp->status, jerr.text);
}

void ctl_http_set_agent(struct ctl_http *http, const uint8_t agent[STEMEDB_AGENT_ID_LEN])
{
	memcpy(http->agent, agent, STEMEDB_AGENT_ID_LEN);
	http->has_agent = true;
}

/* Headers that name the agent and carry its proof of work (pow_timestamp 0: none). */
static struct curl_slist *agent_headers(const struct ctl_http *http, struct curl_slist *headers,
                                        uint64_t pow_nonce, uint64_t pow_timestamp)
{
	char line[128], agent_hex[2 * STEMEDB_AGENT_ID_LEN + 1];

	if (!http->has_agent)
		return headers;
	hex_encode(http->agent, STEMEDB_AGENT_ID_LEN, agent_hex);
	snprintf(line, sizeof(line), "X-Agent-Id: %s", agent_hex);
	headers = curl_slist_append(headers, line);
	if (pow_timestamp == 0)
		return headers;
	snprintf(line, sizeof(line), "X-PoW-Nonce: %" PRIu64, pow_nonce);
	headers = curl_slist_append(headers, line);
	snprintf(line, sizeof(line), "X-PoW-Timestamp: %" PRIu64, pow_timestamp);
	return curl_slist_append(headers, line);
}

static void perform_request(struct ctl_http *http, const char *method, const char *path,
                            const char *query, const char *payload, uint64_t pow_nonce,
                            uint64_t pow_timestamp, struct ctl_response *resp)
{
	struct response_buffer rb = {0};
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	/* API key of stemedb-api when it runs with STEMEDB_AUTH_ENABLED=true. */
	const char *api_key = getenv("STEMEDB_API_KEY");
	char *url;
	CURLcode code;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	if (asprintf(&url, "%s%s%s%s", http->base_url, path, query != NULL ? "?" : "",
	             query != NULL ? query : "") < 0)
		abort();
	headers = curl_slist_append(headers, "Accept: application/json");
	if (api_key != NULL && api_key[0] != '\0') {
		char *line;

		if (asprintf(&line, "X-API-Key: %s", api_key) < 0)
			abort();
		headers = curl_slist_append(headers, line);
		free(line);
	}
	if (payload != NULL)
		headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = agent_headers(http, headers, pow_nonce, pow_timestamp);
	set_request_options(http, method, url, payload, headers, &rb, errbuf);
	curl_easy_setopt(http->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(http->curl, CURLOPT_HEADERDATA, resp);

	code = curl_easy_perform(http->curl);
	if (code == CURLE_OK) {
		curl_easy_getinfo(http->curl, CURLINFO_RESPONSE_CODE, &resp->status);
		parse_response_body(&rb, resp);
	} else {
		resp->transport = true;
		resp->retryable = curl_code_retryable(code);
		snprintf(resp->error, sizeof(resp->error), "%s %s failed: %s", method, url,
		         rb.too_large ? "response too large"
		                      : (errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code)));
	}

	curl_slist_free_all(headers);
	free(rb.data);
	free(url);
}

static const char *error_code(const struct ctl_response *resp)
{
	return json_string_value(json_object_get(json_object_get(resp->body, "error"), "code"));
}

/* Computes a proof for the difficulty in a 428 reply. Returns false when the reply
 * names no usable difficulty or no nonce was found. */
static bool solve_pow(const struct ctl_http *http, const struct ctl_response *resp, uint64_t *nonce,
                      uint64_t *timestamp)
{
	json_int_t difficulty = json_integer_value(json_object_get(resp->body, "difficulty"));
	uint64_t start;
	double started = ctl_now_seconds();
	bool found;

	if (!http->has_agent || difficulty < 1 || difficulty > POW_DIFFICULTY_MAX)
		return false;
	randombytes_buf(&start, sizeof(start));
	start >>= 1; /* keeps start + attempts below 2^64 */
	*timestamp = (uint64_t)time(NULL);
	fprintf(stderr,
	        "stemedb-ctl: the server asks this agent for a proof of work with %d leading "
	        "zero bits; computing it\n",
	        (int)difficulty);
	found = pow_solve(http->agent, *timestamp, (unsigned)difficulty, start,
	                  CTL_POW_ATTEMPTS_MAX, nonce);
	if (found)
		fprintf(stderr, "stemedb-ctl: found the proof of work in %.2f s; sending again\n",
		        ctl_now_seconds() - started);
	return found;
}

void ctl_http_request(struct ctl_http *http, const char *method, const char *path,
                      const char *query, const json_t *body, struct ctl_response *resp)
{
	char *payload = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	uint64_t pow_nonce = 0, pow_timestamp = 0;

	for (int attempt = 1;; attempt++) {
		const char *code;

		perform_request(http, method, path, query, payload, pow_nonce, pow_timestamp, resp);
		if (attempt == CTL_PROTECT_ATTEMPTS)
			break;
		code = error_code(resp);
		if (resp->status == 428 && solve_pow(http, resp, &pow_nonce, &pow_timestamp)) {
			ctl_response_free(resp);
			continue;
		}
		if (resp->status == 429 && resp->retry_after >= 0 &&
		    resp->retry_after <= CTL_RETRY_AFTER_MAX_S && code != NULL &&
		    strcmp(code, "quota_exceeded") != 0) {
			fprintf(stderr,
			        "stemedb-ctl: %s %s returned 429 %s; waiting %ld s as Retry-After "
			        "asks (attempt %d of %d)\n",
			        method, path, code, resp->retry_after, attempt,
			        CTL_PROTECT_ATTEMPTS);
			ctl_response_free(resp);
			sleep((unsigned)resp->retry_after + 1);
			continue;
		}
		break;
	}
	free(payload);
}

void ctl_response_free(struct ctl_response *resp)
{
	json_decref(resp->body);
	resp->body = NULL;
}

int ctl_report_failure(const char *command, const struct ctl_response *resp)
{
	const json_t *error = json_object_get(resp->body, "error");
	const char *code = json_string_value(json_object_get(error, "code"));
	const char *message = json_string_value(json_object_get(error, "message"));
	const char *field = json_string_value(json_object_get(error, "field"));

	if (resp->transport) {
		ctl_error("%s: %s; check that stemedb-api runs and --url is right", command,
		          resp->error);
		return CTL_EXIT_USAGE;
	}
	if (code == NULL) {
		ctl_error("%s: unexpected response with HTTP status %ld%s%s", command, resp->status,
		          resp->error[0] != '\0' ? ": " : "", resp->error);
		return resp->status >= 500 ? CTL_EXIT_USAGE : CTL_EXIT_REJECTED;
	}
	ctl_error("%s: HTTP %ld %s: %s%s%s%s", command, resp->status, code,
	          message != NULL ? message : "(no message)", field != NULL ? " (field " : "",
	          field != NULL ? field : "", field != NULL ? ")" : "");
	return CTL_EXIT_REJECTED;
}
