/* curl.h — libcurl multi transfers on the event loop (outgoing HTTPS, SMTP). */
#ifndef SP_CORE_CURL_H
#define SP_CORE_CURL_H

#include <spearhead/plugin.h>

struct event_base;
struct sp_curl;

struct sp_curl *sp_curl_new(struct event_base *base);
void sp_curl_free(struct sp_curl *c);
/* Runs the easy handle (a CURL *, borrowed until done runs); done gets the CURLcode. */
int sp_curl_add(struct sp_curl *c, struct sp_plugin *plugin, void *easy, sp_curl_done_fn *done,
                void *arg);
/* Ends the transfers of owner (all with NULL); their done runs with an abort code. */
void sp_curl_cancel(struct sp_curl *c, struct sp_plugin *owner);

#endif
