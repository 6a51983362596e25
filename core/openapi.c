/* openapi.c — builds the OpenAPI 3.1 document from the router itself, so core and
 * plugin routes are described alike and no route can be missing from it. */
#include "openapi.h"
#include "router.h"

#include <stdio.h>
#include <string.h>

static json_t *problem_response(const char *description)
{
	return json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", description, "content",
	                 "application/problem+json", "schema", "$ref",
	                 "#/components/schemas/Problem");
}

static json_t *components(void)
{
	json_t *problem = json_pack(
	    "{s:s, s:[s,s,s], s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
	    "s:{s:s, s:{s:s}}}}",
	    "type", "object", "required", "type", "title", "status", "properties", "type", "type",
	    "string", "title", "type", "string", "status", "type", "integer", "detail", "type",
	    "string", "instance", "type", "string", "request_id", "type", "string", "errors",
	    "type", "object", "additionalProperties", "type", "string");
	return json_pack("{s:{s:o}, s:{s:{s:s, s:s}}}", "schemas", "Problem", problem,
	                 "securitySchemes", "bearer", "type", "http", "scheme", "bearer");
}

/* "/v1/events/{id}" + "get" → "get_v1_events_id" */
static void operation_id(const char *method, const char *pattern, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "%s", method);
	for (const char *p = pattern; *p && n + 1 < len; p++) {
		if (*p == '{' || *p == '}')
			continue;
		out[n++] = (*p == '/' || *p == '.' || *p == '-') ? '_' : *p;
	}
	out[n < len ? n : len - 1] = '\0';
	for (char *c = out; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
}

/* A route's schema text as a Schema Object; OpenAPI 3.1 allows only a JSON object or a
 * boolean there, so anything else (unparsable, an array, a number) becomes the default. */
static json_t *schema_or_default(const char *text)
{
	json_t *s = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
	if (s && !json_is_object(s) && !json_is_boolean(s)) {
		json_decref(s);
		s = NULL;
	}
	return s ? s : json_pack("{s:s}", "type", "object");
}

json_t *sp_openapi_document(const struct sp_router *router, const char *version)
{
	json_t *paths = json_object();
	for (size_t i = 0; i < sp_router_count(router); i++) {
		const struct sp_route_entry *e = sp_router_at(router, i);
		const struct sp_route *r = &e->route;
		json_t *item = json_object_get(paths, r->pattern);
		if (!item) {
			item = json_object();
			json_object_set_new(paths, r->pattern, item);
			json_t *params = json_array();
			for (int s = 0; s < e->nsegs; s++) {
				const char *seg = e->segs[s];
				if (seg[0] != '{')
					continue;
				char name[64];
				snprintf(name, sizeof(name), "%.*s", (int)strlen(seg) - 2, seg + 1);
				json_array_append_new(params,
				                      json_pack("{s:s, s:s, s:b, s:{s:s}}", "name",
				                                name, "in", "path", "required", 1,
				                                "schema", "type", "string"));
			}
			if (json_array_size(params))
				json_object_set_new(item, "parameters", params);
			else
				json_decref(params);
		}
		char method[16];
		snprintf(method, sizeof(method), "%s", r->method);
		for (char *c = method; *c; c++)
			*c = (char)(*c - 'A' + 'a');
		char opid[256];
		operation_id(method, r->pattern, opid, sizeof(opid));
		json_t *responses = json_object();
		json_t *ok = json_pack("{s:s}", "description", "Success");
		if (r->response_schema)
			json_object_set_new(ok, "content",
			                    json_pack("{s:{s:o}}", "application/json", "schema",
			                              schema_or_default(r->response_schema)));
		json_object_set_new(responses, strcmp(r->method, "POST") == 0 ? "201" : "200", ok);
		json_object_set_new(responses, "default", problem_response("An error"));
		json_t *op =
		    json_pack("{s:s, s:s, s:o}", "operationId", opid, "summary",
		              r->summary ? r->summary : r->pattern, "responses", responses);
		if (r->request_schema || strcmp(r->method, "POST") == 0 ||
		    strcmp(r->method, "PUT") == 0 || strcmp(r->method, "PATCH") == 0)
			json_object_set_new(op, "requestBody",
			                    json_pack("{s:b, s:{s:{s:o}}}", "required",
			                              r->request_schema != NULL, "content",
			                              "application/json", "schema",
			                              schema_or_default(r->request_schema)));
		if (r->access != SP_ACCESS_PUBLIC)
			json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
		json_object_set_new(op, "tags", json_pack("[s]", e->owner ? "plugins" : "core"));
		json_object_set_new(item, method, op);
	}
	return json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:o}", "openapi", "3.1.0", "info", "title",
	                 "Spearhead", "version", version, "description",
	                 "Platform core for innovation clusters: partners, events, calls.", "paths",
	                 paths, "components", components());
}
