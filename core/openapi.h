/* openapi.h — the OpenAPI 3.1 document of every registered route. */
#ifndef SP_CORE_OPENAPI_H
#define SP_CORE_OPENAPI_H

#include <jansson.h>

struct sp_router;

/* New reference. */
json_t *sp_openapi_document(const struct sp_router *router, const char *version);

#endif
