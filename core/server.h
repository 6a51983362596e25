/* server.h — the HTTP front: evhttp with limits, request lifecycle, replies. */
#ifndef SP_CORE_SERVER_H
#define SP_CORE_SERVER_H

#include <spearhead/plugin.h>
#include <event2/util.h>

struct sp_core;
struct sp_server;
struct sp_config;

/* Binds a listening socket (SO_REUSEADDR, non-blocking, close-on-exec) before any
 * worker forks; returns the fd or -1 with err. *port receives the bound port. */
evutil_socket_t sp_listen_socket(const char *listen, unsigned *port, char *err, size_t errlen);

/* Serves HTTP on listen_fd (borrowed) in core->base. */
struct sp_server *sp_server_new(struct sp_core *core, evutil_socket_t listen_fd);
/* Applies the limits of cfg to new connections and requests (SIGHUP). */
void sp_server_apply_limits(struct sp_server *srv, const struct sp_config *cfg);
/* Stops accepting; done(arg) runs once no request is in flight any more or after
 * timeout_s. New requests on open connections are answered with Connection: close. */
void sp_server_drain(struct sp_server *srv, int timeout_s, void (*done)(void *), void *arg);
/* Ends every streamed answer (their on_close runs): before plugins shut down. */
void sp_server_end_streams(struct sp_server *srv);
void sp_server_free(struct sp_server *srv);
int sp_server_inflight(const struct sp_server *srv);
int sp_server_connections(const struct sp_server *srv);

/* Request accessors and replies (the public API forwards here). */
const char *sp_request_param(struct sp_request *req, const char *name);
const char *sp_request_query(struct sp_request *req, const char *name);
const char *sp_request_header(struct sp_request *req, const char *name);
const char *sp_request_id(struct sp_request *req);
const char *sp_request_method(struct sp_request *req);
const char *sp_request_path(struct sp_request *req);
struct sp_core *sp_request_core(struct sp_request *req);
const struct sp_principal *sp_request_principal(struct sp_request *req);
/* The client's address (borrowed). */
const char *sp_request_peer(struct sp_request *req);
struct sp_db_result;
void sp_request_reply_db_error(struct sp_request *req, const struct sp_db_result *res);
json_t *sp_request_json(struct sp_request *req);
void sp_request_reply_json(struct sp_request *req, int status, json_t *body);
void sp_request_reply_problem(struct sp_request *req, int status, const char *title,
                              const char *detail, json_t *errors);
void sp_request_reply_raw(struct sp_request *req, int status, const char *content_type,
                          const void *body, size_t len);
void sp_request_stream_start(struct sp_request *req, int status, const char *content_type,
                             sp_stream_closed_fn *on_close, void *arg);
int sp_request_stream_send(struct sp_request *req, const void *data, size_t len);
void sp_request_stream_end(struct sp_request *req);
/* Adds a response header before replying (copied). */
void sp_request_add_header(struct sp_request *req, const char *name, const char *value);

#endif
