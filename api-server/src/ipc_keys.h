#ifndef STEMEDB_IPC_KEYS_H
#define STEMEDB_IPC_KEYS_H
/* API key calls of api.sock: create, list, revoke and verify (docs/ipc.md). */
#include <stdbool.h>

#include "stemedb/ipc.h"

/* Replies to request when it is an API key call and returns true; else returns false
 * without replying. Runs on the api.sock event loop: every call is an in-memory table
 * operation, plus one synced RocksDB write for create and revoke. */
bool ipc_keys_handle(struct ipc_conn *conn, const ipc_envelope *request);

#endif
