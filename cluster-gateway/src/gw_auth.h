#ifndef STEMEDB_GW_AUTH_H
#define STEMEDB_GW_AUTH_H

/* Bearer-token check of the admin endpoints. The configured token is kept only as its
 * BLAKE2b-256 digest, and a presented token is compared digest to digest in constant
 * time, so neither its bytes nor its length leak through timing. */

#include <stdbool.h>

struct evkeyvalq;

enum gw_auth_result {
	GW_AUTH_OK = 0,    /* no token configured, or the right token */
	GW_AUTH_MISSING,   /* no Authorization header: 401 */
	GW_AUTH_MALFORMED, /* not "Bearer <token>", or the header is repeated: 401 */
	GW_AUTH_WRONG,     /* a well-formed header with another token: 403 */
};

/* Stores the digest of token; an empty token disables the check. Call once at
 * start-up, after sodium_init. */
void gw_auth_init(const char *token);

/* Checks the Authorization header of a request. */
enum gw_auth_result gw_auth_check(const struct evkeyvalq *headers);

/* Short label of a result, used in metrics and logs: "ok", "missing", ... */
const char *gw_auth_result_name(enum gw_auth_result result);

#endif
