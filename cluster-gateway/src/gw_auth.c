#include "gw_auth.h"

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

static bool token_configured;
static unsigned char token_digest[crypto_generichash_BYTES];

void gw_auth_init(const char *token)
{
	size_t len = strlen(token);

	token_configured = len > 0;
	crypto_generichash(token_digest, sizeof(token_digest), (const unsigned char *)token, len,
	                   NULL, 0);
}

/* Finds the only Authorization header. Sets *repeated when there is more than one,
 * because two credentials make the request ambiguous. */
static const char *find_authorization(const struct evkeyvalq *headers, bool *repeated)
{
	const char *value = NULL;
	const struct evkeyval *h;

	*repeated = false;
	TAILQ_FOREACH(h, headers, next)
	{
		if (strcasecmp(h->key, "Authorization") != 0)
			continue;
		if (value != NULL)
			*repeated = true;
		value = h->value;
	}
	return value;
}

/* A bearer token is one word of visible ASCII. The configured token is held to the
 * same rule at start-up, so a byte outside it can never match. */
static bool is_token_byte(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e;
}

enum gw_auth_result gw_auth_check(const struct evkeyvalq *headers)
{
	unsigned char digest[crypto_generichash_BYTES];
	const char *value, *token;
	bool repeated;

	if (!token_configured)
		return GW_AUTH_OK;

	value = find_authorization(headers, &repeated);
	if (value == NULL)
		return GW_AUTH_MISSING;
	if (repeated || strncasecmp(value, "Bearer ", 7) != 0)
		return GW_AUTH_MALFORMED;

	token = value + 7;
	while (*token == ' ')
		token++;
	if (*token == '\0')
		return GW_AUTH_MALFORMED;
	for (const char *p = token; *p != '\0'; p++) {
		if (!is_token_byte((unsigned char)*p))
			return GW_AUTH_MALFORMED;
	}

	crypto_generichash(digest, sizeof(digest), (const unsigned char *)token, strlen(token),
	                   NULL, 0);
	return sodium_memcmp(digest, token_digest, sizeof(digest)) == 0 ? GW_AUTH_OK
	                                                                : GW_AUTH_WRONG;
}

const char *gw_auth_result_name(enum gw_auth_result result)
{
	switch (result) {
	case GW_AUTH_OK:
		return "ok";
	case GW_AUTH_MISSING:
		return "missing";
	case GW_AUTH_MALFORMED:
		return "malformed";
	case GW_AUTH_WRONG:
		return "wrong";
	}
	return "unknown";
}
