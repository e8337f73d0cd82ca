#include "gw_job.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <string.h>

#include "gw_metrics.h"
#include "stemedb/log.h"

static void on_job_done(evutil_socket_t fd, short what, void *arg)
{
	struct gw_job *job = arg;
	struct gateway *gw = job->request->gw;

	(void)fd;
	(void)what;
	job->finish(job);
	atomic_fetch_sub(&gw->jobs_running, 1);
	metric_set(gw_metrics.jobs_running, (double)atomic_load(&gw->jobs_running));
}

static void *job_main(void *arg)
{
	struct gw_job *job = arg;
	struct event_base *base = job->request->gw->base;
	const struct timeval now = {0, 0};

	job->work(job);

	/* event_base_once is safe from another thread because main called
	 * evthread_use_pthreads, and it wakes the loop. In libevent 2.1 it fails only when
	 * an allocation fails. */
	if (event_base_once(base, -1, EV_TIMEOUT, on_job_done, job, &now) != 0) {
		log_error("event_base_once failed, so a finished IPC job cannot reply; the "
		          "gateway stops");
		abort();
	}
	return NULL;
}

bool gw_job_start(struct gw_job *job)
{
	struct gateway *gw = job->request->gw;
	pthread_attr_t attr;
	pthread_t thread;
	int rc;

	if (atomic_fetch_add(&gw->jobs_running, 1) >= GW_JOBS_MAX) {
		atomic_fetch_sub(&gw->jobs_running, 1);
		return false;
	}

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, job_main, job);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		atomic_fetch_sub(&gw->jobs_running, 1);
		log_error("pthread_create failed for an IPC job: %s", strerror(rc));
		return false;
	}
	metric_set(gw_metrics.jobs_running, (double)atomic_load(&gw->jobs_running));
	return true;
}
