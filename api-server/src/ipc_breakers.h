#ifndef STEMEDB_IPC_BREAKERS_H
#define STEMEDB_IPC_BREAKERS_H

/* The circuit breaker admin calls of api.sock: list, ban and reset. */

#include "http_server.h"
#include "stemedb/ipc.h"

/* Answers a ListCircuitBreakers, BanCircuitBreaker or ResetCircuitBreaker request. */
void ipc_breakers_handle(struct api_state *state, struct ipc_conn *conn,
                         const ipc_envelope *request);

#endif
