#ifndef STEMEDB_IPC_BREAKERS_H
#define STEMEDB_IPC_BREAKERS_H

/* The circuit breaker admin calls of api.sock: list, ban and reset. */

#include "http_server.h"
#include "stemedb/ipc.h"

/* Handles a ListCircuitBreakers, BanCircuitBreaker or ResetCircuitBreaker request and
 * sends the reply. */
void ipc_breakers_handle(struct api_state *state, struct ipc_conn *conn,
                         const ipc_envelope *request);

#endif
