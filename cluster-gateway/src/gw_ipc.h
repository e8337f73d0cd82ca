#ifndef STEMEDB_GW_IPC_H
#define STEMEDB_GW_IPC_H

/* Calls from the gateway to stemedb-api over api.sock. Each call takes a client of
 * its own from a pool, so calls on different job threads never share a connection,
 * and records its latency and failures in the gateway's metrics. Only job threads call
 * these functions, because they block for up to the deadline. */

#include <stdbool.h>
#include <stdint.h>

#include "gw_config.h"
#include "stemedb/ipc.h"

struct gw_ipc_status {
	enum ipc_result result;
	Stemedb__Ipc__V1__ErrorCode remote_code; /* set when result is IPC_ERR_REMOTE */
	char message[512];                       /* why the call failed, for replies */
};

/* Sends request (its body set by the caller) and returns the reply whose body is
 * expected, or NULL with the cause in *status. call names the call in metrics and
 * logs ("stats", "compact", ...). A call with a deadline longer than the configured
 * IPC timeout is preceded by a Ready call within that timeout, and fails at once when
 * stemedb-api is down or not ready. Free the reply with ipc_envelope_free. */
ipc_envelope *gw_ipc_call(const struct gw_config *cfg, const char *call, ipc_envelope *request,
                          ipc_body_case expected, uint64_t timeout_ms,
                          struct gw_ipc_status *status);

/* Returns true when stemedb-api replies to a Ready call within the IPC timeout and is
 * ready; else false with the cause in *status. */
bool gw_ipc_ready(const struct gw_config *cfg, struct gw_ipc_status *status);

/* Convenience wrappers around gw_ipc_call for the calls the gateway makes. */
ipc_envelope *gw_ipc_stats(const struct gw_config *cfg, struct gw_ipc_status *status);
ipc_envelope *gw_ipc_compact(const struct gw_config *cfg, struct gw_ipc_status *status);
ipc_envelope *gw_ipc_rebuild_indexes(const struct gw_config *cfg, struct gw_ipc_status *status);

/* Frees the idle clients. Call at exit, after every job thread has returned. */
void gw_ipc_free_idle(void);

#endif
