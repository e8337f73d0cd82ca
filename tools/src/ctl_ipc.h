#ifndef STEMEDB_CTL_IPC_H
#define STEMEDB_CTL_IPC_H

/* `stemedb-ctl ipc CALL`: one api.sock call, or the ingested event stream. */
int ctl_cmd_ipc(int argc, char **argv);

#endif
