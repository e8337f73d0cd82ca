#ifndef STEMEDB_GW_HANDLERS_H
#define STEMEDB_GW_HANDLERS_H

/* Endpoint handlers of stemedb-gateway. The dispatcher has already checked the route,
 * the method, the absence of a query string and, for paths under /v1/admin/, the bearer token.
 * Every handler replies exactly once, possibly after a job thread returns. */

#include "gw_http.h"

void gw_handle_health(struct gw_request *r);
void gw_handle_metrics(struct gw_request *r);
void gw_handle_cluster_status(struct gw_request *r);
void gw_handle_admin_compact(struct gw_request *r);
void gw_handle_admin_rebuild(struct gw_request *r);
void gw_handle_admin_backup(struct gw_request *r);
/* gw_trust.c */
void gw_handle_admin_trust_outcome(struct gw_request *r);
/* gw_breakers.c */
void gw_handle_admin_breakers(struct gw_request *r);
void gw_handle_admin_breaker_ban(struct gw_request *r);
void gw_handle_admin_breaker_reset(struct gw_request *r);

/* gw_keys.c */
void gw_handle_admin_api_keys_list(struct gw_request *r);
void gw_handle_admin_api_keys_create(struct gw_request *r);
void gw_handle_admin_api_key_revoke(struct gw_request *r);
/* Verifies the X-API-Key of an admin request with stemedb-api on a job thread, then
 * dispatches r when the key is valid and has the admin scope, else replies 401 or
 * 403. */
void gw_check_admin_api_key(struct gw_request *r, const char *api_key);

/* gw_quarantine.c; the list reads its own query string */
void gw_handle_admin_quarantine_list(struct gw_request *r);
void gw_handle_admin_quarantine_decision(struct gw_request *r);

#endif
