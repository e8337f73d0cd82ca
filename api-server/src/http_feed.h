#ifndef STEMEDB_HTTP_FEED_H
#define STEMEDB_HTTP_FEED_H

/* GET /v1/feed: newly stored assertions, newest first, as pages or (with Accept:
 * text/event-stream) as a live stream of Server-Sent Events. */

#include <stddef.h>

#include "commit.h"

/* Hands newly stored assertions to every open stream. Called on the commit writer
 * thread; it only queues and wakes the streams' workers, so it never blocks on a
 * client. A stream whose queue is full is closed by its worker. */
void http_feed_publish(const struct commit_ingested *items, size_t count);

#endif
