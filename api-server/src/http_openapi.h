#ifndef STEMEDB_HTTP_OPENAPI_H
#define STEMEDB_HTTP_OPENAPI_H

/* GET /api-doc/openapi.json: the OpenAPI 3.1 document of this API. The Makefile
 * embeds api-server/openapi.json as openapi_doc when it builds the API library. */

#include <stddef.h>

#include "http_server.h"

extern const unsigned char openapi_doc[];
extern const size_t openapi_doc_len;

void http_handle_openapi(struct http_call *call);

#endif
