/* test_router.c — routing: literals, parameters, precedence, 405/Allow, bad patterns. */
#include "router.h"
#include "tap.h"

#include <stdlib.h>

static void h(struct sp_request *req, void *arg)
{
}

static int add(struct sp_router *r, const char *method, const char *pattern)
{
	char err[256];
	struct sp_route route = { method, pattern, SP_ACCESS_PUBLIC, h, NULL, NULL, NULL };
	return sp_router_add(r, &route, NULL, NULL, err, sizeof(err));
}

int main(void)
{
	struct sp_router *r = sp_router_new();
	is_int(add(r, "GET", "/v1/events"), 0, "add list route");
	is_int(add(r, "POST", "/v1/events"), 0, "add create route on same path");
	is_int(add(r, "GET", "/v1/events/{id}"), 0, "add parameter route");
	is_int(add(r, "DELETE", "/v1/events/{id}"), 0, "add delete");
	is_int(add(r, "GET", "/v1/events/{id}/registrations/{rid}"), 0, "two parameters");
	is_int(add(r, "GET", "/v1/events/upcoming"), 0, "literal beside parameter");
	is_int(add(r, "GET", "/v1/events/{other}"), -1, "same shape twice is refused");
	is_int(add(r, "GET", "v1/x"), -1, "pattern must start with /");
	is_int(add(r, "GET", "/v1/x/"), -1, "trailing slash refused");
	is_int(add(r, "GET", "/v1//x"), -1, "empty segment refused");
	is_int(add(r, "GET", "/v1/{a-b}"), -1, "bad parameter name refused");
	is_int(add(r, "GET", "/v1/x{id}"), -1, "partial parameter segment refused");
	is_int(add(r, "BREW", "/v1/coffee"), -1, "unknown method refused");

	struct sp_route_match m;
	is_int(sp_router_match(r, "GET", "/v1/events", &m), SP_MATCH_OK, "match list");
	is_str(m.entry->route.pattern, "/v1/events", "list pattern");
	sp_route_match_clear(&m);

	is_int(sp_router_match(r, "GET", "/v1/events/42", &m), SP_MATCH_OK, "match param");
	is_str(sp_route_match_param(&m, "id"), "42", "param value");
	is_str(sp_route_match_param(&m, "nope"), NULL, "absent param is NULL");
	sp_route_match_clear(&m);

	is_int(sp_router_match(r, "GET", "/v1/events/a%20b", &m), SP_MATCH_OK, "encoded param");
	is_str(sp_route_match_param(&m, "id"), "a b", "param is percent-decoded");
	sp_route_match_clear(&m);

	is_int(sp_router_match(r, "GET", "/v1/events/upcoming", &m), SP_MATCH_OK,
	       "literal wins over parameter");
	is_str(m.entry->route.pattern, "/v1/events/upcoming", "the literal route");
	sp_route_match_clear(&m);

	is_int(sp_router_match(r, "GET", "/v1/events/7/registrations/9", &m), SP_MATCH_OK,
	       "two params");
	is_str(sp_route_match_param(&m, "rid"), "9", "second param");
	sp_route_match_clear(&m);

	is_int(sp_router_match(r, "HEAD", "/v1/events/7", &m), SP_MATCH_OK, "HEAD matches GET");
	sp_route_match_clear(&m);

	is_int(sp_router_match(r, "PUT", "/v1/events/7", &m), SP_MATCH_BAD_METHOD,
	       "known path, wrong method");
	is_str(m.allow, "GET, HEAD, DELETE, OPTIONS", "Allow lists the methods");
	sp_route_match_clear(&m);

	is_int(sp_router_match(r, "GET", "/v1/nothing", &m), SP_MATCH_NOT_FOUND, "unknown path");
	is_int(sp_router_match(r, "GET", "/v1/events/", &m), SP_MATCH_NOT_FOUND,
	       "trailing slash does not match");
	is_int(sp_router_match(r, "GET", "/v1//events", &m), SP_MATCH_NOT_FOUND,
	       "double slash does not match");
	is_int(sp_router_match(r, "GET", "", &m), SP_MATCH_NOT_FOUND, "empty path");

	is_int((long)sp_router_count(r), 6, "six routes registered");
	sp_router_free(r);
	return tap_done();
}
