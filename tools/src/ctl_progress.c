/* Progress line of long-running commands: records done out of total, rate and ETA,
 * redrawn in place on stderr when stderr is a terminal. */

#include <stdio.h>
#include <time.h>

#include "ctl.h"

/* Ten redraws a second keep the line readable without costing measurable time. */
#define CTL_PROGRESS_INTERVAL_S 0.1
#define CTL_PROGRESS_BAR_WIDTH  30

double ctl_now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ctl_progress_start(struct ctl_progress *p, size_t total, bool enabled)
{
	p->enabled = enabled;
	p->total = total;
	p->start = ctl_now_seconds();
	p->last_draw = 0.0;
}

static void format_eta(double seconds, char *out, size_t out_size)
{
	long s = (long)(seconds + 0.5);

	if (seconds < 0.0 || seconds > 359999.0)
		snprintf(out, out_size, "--:--");
	else if (s >= 3600)
		snprintf(out, out_size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(out, out_size, "%ld:%02ld", s / 60, s % 60);
}

void ctl_progress_update(struct ctl_progress *p, size_t done, bool force)
{
	double now = ctl_now_seconds();
	double elapsed = now - p->start;
	double rate = elapsed > 0.0 ? (double)done / elapsed : 0.0;
	double fraction = p->total > 0 ? (double)done / (double)p->total : 1.0;
	int filled = (int)(fraction * CTL_PROGRESS_BAR_WIDTH);
	char bar[CTL_PROGRESS_BAR_WIDTH + 1];
	char eta[32];

	if (!p->enabled || (!force && now - p->last_draw < CTL_PROGRESS_INTERVAL_S))
		return;
	p->last_draw = now;

	for (int i = 0; i < CTL_PROGRESS_BAR_WIDTH; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[CTL_PROGRESS_BAR_WIDTH] = '\0';
	format_eta(rate > 0.0 ? (double)(p->total - done) / rate : -1.0, eta, sizeof(eta));
	fprintf(stderr, "\r[%s] %zu/%zu records %5.1f%%  %.0f/s  ETA %s \033[K", bar, done,
	        p->total, 100.0 * fraction, rate, eta);
	fflush(stderr);
}

void ctl_progress_finish(struct ctl_progress *p, size_t done)
{
	if (!p->enabled)
		return;
	ctl_progress_update(p, done, true);
	fputc('\n', stderr);
}
