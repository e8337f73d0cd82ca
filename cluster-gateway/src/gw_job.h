#ifndef STEMEDB_GW_JOB_H
#define STEMEDB_GW_JOB_H

/* Blocking IPC calls run on a thread of their own, one per request, so the event loop
 * keeps serving while stemedb-api is slow or gone. The job's finish step runs back on
 * the loop thread, where it may reply. */

#include <stdbool.h>

#include "gw_http.h"

struct gw_job {
	struct gw_request *request;
	void (*work)(struct gw_job *job);   /* job thread: the IPC calls, no replies */
	void (*finish)(struct gw_job *job); /* loop thread: reply, then free what work made */
	void *data;                         /* owned by the handler */
};

/* Maximum number of job threads at once. A request beyond it gets 503 at once. */
#define GW_JOBS_MAX 32

/* Starts job->work on a new thread and schedules job->finish on the loop when it
 * returns. The job must stay valid until finish runs, which frees it. Returns false
 * (and runs nothing) when the limit is reached or the thread cannot start; the caller
 * then replies itself. */
bool gw_job_start(struct gw_job *job);

#endif
