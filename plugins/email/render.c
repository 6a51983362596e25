/* render.c — the e-mail template language (a Mustache subset) and template lookup. */
#include "render.h"
#include "mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 127
#define DEPTH_MAX    16

struct tag {
	const char *start, *end; /* the whole tag, "{{" to "}}" included */
	char kind;               /* 'v' value, 'r' raw, '#', '^', '/', '!' */
	char name[NAME_MAX_LEN + 1];
};

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* The next tag in [p, end): 1 when there is none, -1 when one is malformed. */
static int next_tag(const char *p, const char *end, struct tag *t)
{
	const char *s = p;
	for (;;) {
		s = strstr(s, "{{");
		if (!s || s >= end)
			return 1;
		break;
	}
	t->start = s;
	const char *in = s + 2, *close;
	if (*in == '{') {
		t->kind = 'r';
		in++;
		close = strstr(in, "}}}");
		if (!close || close + 3 > end)
			return -1;
		t->end = close + 3;
	} else {
		t->kind = strchr("#^/!", *in) && *in ? *in++ : 'v';
		close = strstr(in, "}}");
		if (!close || close + 2 > end)
			return -1;
		t->end = close + 2;
	}
	t->name[0] = '\0';
	if (t->kind == '!')
		return 0;
	while (in < close && (*in == ' ' || *in == '\t'))
		in++;
	const char *e = close;
	while (e > in && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (!name_ok(in, (size_t)(e - in)))
		return -1;
	memcpy(t->name, in, (size_t)(e - in));
	t->name[e - in] = '\0';
	return 0;
}

int em_template_check(const char *tmpl, char *err, size_t errlen)
{
	char stack[DEPTH_MAX][NAME_MAX_LEN + 1];
	int depth = 0;
	const char *end = tmpl + strlen(tmpl), *p = tmpl;
	struct tag t;
	int r;
	while ((r = next_tag(p, end, &t)) == 0) {
		if (t.kind == '#' || t.kind == '^') {
			if (depth == DEPTH_MAX) {
				snprintf(err, errlen, "sections nested deeper than %d at byte %ld",
				         DEPTH_MAX, (long)(t.start - tmpl));
				return -1;
			}
			snprintf(stack[depth++], sizeof(stack[0]), "%s", t.name);
		} else if (t.kind == '/') {
			if (depth == 0 || strcmp(stack[depth - 1], t.name) != 0) {
				snprintf(err, errlen, "{{/%s}} at byte %ld closes no open section",
				         t.name, (long)(t.start - tmpl));
				return -1;
			}
			depth--;
		}
		p = t.end;
	}
	if (r < 0) {
		snprintf(err, errlen, "malformed tag at byte %ld (unclosed, or a bad name)",
		         (long)(strstr(p, "{{") - tmpl));
		return -1;
	}
	if (depth) {
		snprintf(err, errlen, "section {{#%s}} is not closed", stack[depth - 1]);
		return -1;
	}
	return 0;
}

static const json_t *lookup(const json_t *vars, const char *name)
{
	char path[NAME_MAX_LEN + 1];
	snprintf(path, sizeof(path), "%s", name);
	const json_t *v = vars;
	char *save = NULL;
	for (char *key = strtok_r(path, ".", &save); key && v; key = strtok_r(NULL, ".", &save))
		v = json_is_object(v) ? json_object_get(v, key) : NULL;
	return v == vars ? NULL : v;
}

static bool truthy(const json_t *v)
{
	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_STRING:
		return json_string_length(v) > 0;
	case JSON_TRUE:
		return true;
	case JSON_INTEGER:
		return json_integer_value(v) != 0;
	case JSON_REAL:
		return json_real_value(v) != 0;
	case JSON_ARRAY:
		return json_array_size(v) > 0;
	case JSON_OBJECT:
		return json_object_size(v) > 0;
	default:
		return false;
	}
}

static void escape_html(struct em_buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '&':
			em_buf_str(b, "&amp;");
			break;
		case '<':
			em_buf_str(b, "&lt;");
			break;
		case '>':
			em_buf_str(b, "&gt;");
			break;
		case '"':
			em_buf_str(b, "&quot;");
			break;
		case '\'':
			em_buf_str(b, "&#39;");
			break;
		default:
			em_buf_add(b, s + i, 1);
		}
	}
}

static void put_value(struct em_buf *b, const json_t *v, bool escape)
{
	char num[64];
	const char *s = "";
	size_t n = 0;
	if (json_is_string(v)) {
		s = json_string_value(v);
		n = json_string_length(v);
	} else if (json_is_integer(v)) {
		n = (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
		                     json_integer_value(v));
		s = num;
	} else if (json_is_real(v)) {
		n = (size_t)snprintf(num, sizeof(num), "%g", json_real_value(v));
		s = num;
	} else if (json_is_true(v)) {
		s = "true";
		n = 4;
	}
	if (escape)
		escape_html(b, s, n);
	else
		em_buf_add(b, s, n);
}

/* A tag alone on its line (only blanks around it): *line is where the line starts,
 * *next where the following line starts. */
static bool standalone(const char *tmpl, const struct tag *t, const char **line, const char **next)
{
	const char *l = t->start;
	while (l > tmpl && (l[-1] == ' ' || l[-1] == '\t'))
		l--;
	if (l > tmpl && l[-1] != '\n')
		return false;
	const char *e = t->end;
	while (*e == ' ' || *e == '\t')
		e++;
	if (*e == '\n')
		e++;
	else if (e[0] == '\r' && e[1] == '\n')
		e += 2;
	else if (*e)
		return false;
	*line = l;
	*next = e;
	return true;
}

/* The {{/name}} that closes the section opened by open (the template is well formed). */
static int find_close(const struct tag *open, const char *end, struct tag *close)
{
	int depth = 1;
	const char *p = open->end;
	while (next_tag(p, end, close) == 0) {
		if ((close->kind == '#' || close->kind == '^') &&
		    strcmp(close->name, open->name) == 0)
			depth++;
		else if (close->kind == '/' && strcmp(close->name, open->name) == 0 && --depth == 0)
			return 0;
		p = close->end;
	}
	return -1;
}

static void render_range(const char *tmpl, const char *p, const char *end, const json_t *vars,
                         bool html, struct em_buf *out)
{
	struct tag t, c;
	const char *line, *next;
	while (p < end) {
		if (next_tag(p, end, &t) != 0) {
			em_buf_add(out, p, (size_t)(end - p));
			return;
		}
		em_buf_add(out, p, (size_t)(t.start - p));
		p = t.end;
		switch (t.kind) {
		case 'v':
		case 'r':
			put_value(out, lookup(vars, t.name), html && t.kind == 'v');
			break;
		case '!':
			if (standalone(tmpl, &t, &line, &next)) {
				out->len -= (size_t)(t.start - line);
				p = next;
			}
			break;
		case '#':
		case '^': {
			if (find_close(&t, end, &c) < 0)
				return;
			const char *body = t.end, *body_end = c.start;
			p = c.end;
			if (standalone(tmpl, &t, &line, &next)) {
				out->len -= (size_t)(t.start - line);
				body = next;
			}
			if (standalone(tmpl, &c, &line, &next)) {
				body_end = line;
				p = next;
			}
			if (body_end < body)
				body_end = body;
			if (truthy(lookup(vars, t.name)) == (t.kind == '#'))
				render_range(tmpl, body, body_end, vars, html, out);
			break;
		}
		default: /* a stray close: em_template_check refuses it */
			break;
		}
		if (out->p)
			out->p[out->len] = '\0';
	}
}

char *em_render(const char *tmpl, const json_t *vars, bool html)
{
	char err[160];
	if (!tmpl || em_template_check(tmpl, err, sizeof(err)) < 0)
		return NULL;
	struct em_buf out = { 0 };
	render_range(tmpl, tmpl, tmpl + strlen(tmpl), vars, html, &out);
	return em_buf_take(&out);
}

char *em_text_to_html(const char *text)
{
	struct em_buf b = { 0 };
	const char *p = text ? text : "";
	bool open = false;
	while (*p) {
		size_t n = strcspn(p, "\r\n");
		bool blank = true;
		for (size_t i = 0; i < n; i++)
			blank &= p[i] == ' ' || p[i] == '\t';
		if (blank) {
			if (open)
				em_buf_str(&b, "</p>\n");
			open = false;
		} else {
			em_buf_str(&b, open ? "<br>\n" : "<p>");
			open = true;
			escape_html(&b, p, n);
		}
		p += n;
		if (p[0] == '\r' && p[1] == '\n')
			p += 2;
		else if (*p)
			p++;
	}
	if (open)
		em_buf_str(&b, "</p>");
	return em_buf_take(&b);
}

bool em_valid_language(const char *lang)
{
	if (!lang)
		return false;
	size_t i = 0;
	while (lang[i] >= 'a' && lang[i] <= 'z')
		i++;
	if (i < 2 || i > 3)
		return false;
	if (!lang[i])
		return true;
	if (lang[i] != '-')
		return false;
	size_t j = ++i;
	while ((lang[j] >= 'a' && lang[j] <= 'z') || (lang[j] >= '0' && lang[j] <= '9'))
		j++;
	return !lang[j] && j - i >= 2 && j - i <= 8;
}

const char *em_template_find(const json_t *set, const char *lang, const char *type,
                             const char *part)
{
	char primary[4] = "";
	if (lang && strchr(lang, '-') && (size_t)(strchr(lang, '-') - lang) < sizeof(primary))
		snprintf(primary, sizeof(primary), "%.*s", (int)(strchr(lang, '-') - lang), lang);
	const char *langs[] = { lang, primary[0] ? primary : NULL, "en" };
	for (size_t i = 0; i < sizeof(langs) / sizeof(langs[0]); i++) {
		if (!langs[i])
			continue;
		const char *names[] = { type, "default" };
		for (size_t k = 0; k < 2; k++) {
			char key[256];
			if (!names[k])
				continue;
			snprintf(key, sizeof(key), "%s/%s.%s", langs[i], names[k], part);
			const char *text = json_string_value(json_object_get(set, key));
			if (text)
				return text;
		}
	}
	return NULL;
}
