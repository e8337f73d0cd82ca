#include "http_openapi.h"

#include "http_util.h"

/* Serves the document even during WAL replay, because it is static and a client
 * may read the API description before the node is ready. */
void http_handle_openapi(struct http_call *call)
{
	if (!http_query_reject_any(call))
		return;

	http_reply_bytes(call, 200, "application/json", openapi_doc, openapi_doc_len);
}
