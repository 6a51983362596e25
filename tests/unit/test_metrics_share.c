/* test_metrics_share.c — one /metrics for several workers: labelling each worker's
 * series, merging expositions by family, and the shared slots across a fork. */
#include "metrics_share.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The buffer's text, NUL-terminated (caller frees); empties buf. */
static char *take(struct evbuffer *buf)
{
	size_t n = evbuffer_get_length(buf);
	char *s = malloc(n + 1);
	evbuffer_remove(buf, s, n);
	s[n] = '\0';
	return s;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static const char W1[] = "# HELP a_total Things.\n"
                         "# TYPE a_total counter\n"
                         "a_total{route=\"/x\",status=\"200\"} 3\n"
                         "# HELP b Plain.\n"
                         "# TYPE b gauge\n"
                         "b 1\n"
                         "c{} 4\n";

int main(void)
{
	struct evbuffer *buf = evbuffer_new();
	sp_metrics_label_worker(W1, strlen(W1), 1, buf);
	char *l1 = take(buf);
	ok(strstr(l1, "a_total{worker=\"1\",route=\"/x\",status=\"200\"} 3\n") != NULL,
	   "a labelled sample gets the worker first");
	ok(strstr(l1, "\nb{worker=\"1\"} 1\n") != NULL, "an unlabelled sample gets braces");
	ok(strstr(l1, "\nc{worker=\"1\"} 4\n") != NULL, "empty braces get the label alone");
	ok(strstr(l1, "# HELP a_total Things.\n# TYPE a_total counter\n") != NULL,
	   "comments are left alone");

	/* Worker 2 has an extra family and no b; its text has no final newline. */
	const char W2[] = "# HELP a_total Things.\n# TYPE a_total counter\n"
	                  "a_total{route=\"/x\",status=\"200\"} 5\n"
	                  "# HELP z_bytes Z.\n# TYPE z_bytes gauge\nz_bytes 9";
	sp_metrics_label_worker(W2, strlen(W2), 2, buf);
	char *l2 = take(buf);
	const char *texts[] = { l1, l2 };
	size_t lens[] = { strlen(l1), strlen(l2) };
	sp_metrics_merge(texts, lens, 2, buf);
	char *m = take(buf);
	is_int(count(m, "# TYPE a_total"), 1, "each family is declared once");
	is_int(count(m, "# HELP a_total"), 1, "and described once");
	const char *t = strstr(m, "# TYPE a_total counter\n");
	const char *s1 = strstr(m, "a_total{worker=\"1\"");
	const char *s2 = strstr(m, "a_total{worker=\"2\"");
	const char *hb = strstr(m, "# HELP b ");
	ok(t && s1 && s2 && hb && t < s1 && s1 < s2 && s2 < hb,
	   "a family's samples from both workers follow its declaration, before the next family");
	ok(strstr(m, "# TYPE z_bytes gauge\nz_bytes{worker=\"2\"} 9\n") != NULL,
	   "a family only one worker has is kept, last line included");
	ok(strstr(m, "c{worker=\"1\"} 4\n") != NULL, "samples are all there");
	free(m);

	/* Shared slots: a child process publishes, the parent reads it. */
	struct sp_metrics_share *share = sp_metrics_share_new(3);
	ok(share != NULL, "a share for 3 workers");
	pid_t pid = fork();
	if (pid == 0) {
		sp_metrics_share_publish(share, 2, l2, strlen(l2));
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	sp_metrics_share_render(share, 1, l1, strlen(l1), buf);
	m = take(buf);
	ok(strstr(m, "a_total{worker=\"2\",route=\"/x\",status=\"200\"} 5\n") != NULL,
	   "what another process published is merged in");
	ok(strstr(m, "a_total{worker=\"1\",route=\"/x\",status=\"200\"} 3\n") != NULL,
	   "with the caller's own");
	is_int(count(m, "# TYPE a_total"), 1, "still one declaration");
	free(m);
	/* Too long for a slot: cut at a line end, never mid-line. */
	size_t big_len = 600 * 1024;
	char *big = malloc(big_len);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (i % 20 == 19) ? '\n' : 'x';
	sp_metrics_share_publish(share, 3, big, big_len);
	sp_metrics_share_render(share, 1, "", 0, buf);
	m = take(buf);
	size_t n = strlen(m);
	ok(n > 0 && n < big_len && m[n - 1] == '\n', "an oversized exposition keeps whole lines");
	free(m);
	free(big);
	sp_metrics_share_publish(share, 7, l1, strlen(l1)); /* out of range: ignored */
	sp_metrics_share_free(share);

	free(l1);
	free(l2);
	evbuffer_free(buf);
	return tap_done();
}
