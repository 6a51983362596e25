/* test_email_template.c — the email plugin's templates: values, HTML escaping, raw
 * values, sections, inverted sections, dotted names, standalone tag lines, comments,
 * refused templates, text to HTML, language tags, the lookup order by language and
 * type, and the built-in English templates. */
#include "tap.h"
#include "../../plugins/email/render.h"

#include <stdlib.h>
#include <string.h>

extern const struct em_builtin email_builtin_templates[];

static void is_render(const char *tmpl, const json_t *vars, bool html, const char *want,
                      const char *desc)
{
	char *got = em_render(tmpl, vars, html);
	is_str(got, want, "%s", desc);
	free(got);
}

static void rendering(void)
{
	json_t *v =
	    json_pack("{s:s, s:s, s:s, s:i, s:b, s:b, s:{s:s, s:{s:s}}, s:[]}", "name", "Ann",
	              "html", "<b>&\"'</b>", "empty", "", "n", 42, "yes", 1, "no", 0, "data", "url",
	              "https://x.example/?a=1&b=2", "deep", "k", "v", "list");
	is_render("Hi {{name}}!", v, false, "Hi Ann!", "a value");
	is_render("Hi {{ name }}!", v, false, "Hi Ann!", "spaces inside the tag");
	is_render("{{html}}", v, false, "<b>&\"'</b>", "text is not escaped");
	is_render("{{html}}", v, true, "&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;", "HTML is escaped");
	is_render("{{{html}}}", v, true, "<b>&\"'</b>", "triple braces: raw");
	is_render("[{{missing}}]", v, false, "[]", "a missing value is empty");
	is_render("{{n}} {{yes}} [{{no}}]", v, false, "42 true []", "numbers and booleans");
	is_render("{{data.url}}", v, true, "https://x.example/?a=1&amp;b=2", "dotted name");
	is_render("{{data.deep.k}} [{{data.none.k}}] [{{data}}]", v, false, "v [] []",
	          "deeper names; objects render empty");
	is_render("{{#name}}yes{{/name}}{{#empty}}no{{/empty}}{{#missing}}no{{/missing}}", v, false,
	          "yes", "sections");
	is_render("{{^empty}}none{{/empty}}{{^name}}no{{/name}}", v, false, "none",
	          "inverted sections");
	is_render("{{#yes}}{{#n}}a{{/n}}{{^no}}b{{/no}}{{/yes}}", v, false, "ab",
	          "nested sections");
	is_render("{{#list}}x{{/list}}{{^list}}empty list{{/list}}", v, false, "empty list",
	          "an empty array is not set");
	is_render("{{#name}}{{#name}}in{{/name}}{{/name}}", v, false, "in",
	          "a section nested in one of the same name");
	is_render("a\n{{#name}}\nb\n{{/name}}\nc\n", v, false, "a\nb\nc\n",
	          "standalone section lines disappear");
	is_render("a\n  {{^name}}  \nb\n{{/name}}\nc", v, false, "a\nc",
	          "standalone lines of a hidden section too");
	is_render("a {{#name}}b{{/name}} c\n", v, false, "a b c\n",
	          "inline sections keep the line");
	is_render("{{! a comment }}\nline\nx{{! inline }}y", v, false, "line\nxy", "comments");
	is_render("a\r\n{{#name}}\r\nb\r\n{{/name}}\r\n", v, false, "a\r\nb\r\n", "CRLF templates");
	is_render("{ {not a tag} } {x}", v, false, "{ {not a tag} } {x}", "single braces are text");
	ok(em_render("{{name", v, false) == NULL, "an unclosed tag is refused");
	ok(em_render("{{#name}}x", v, false) == NULL, "an unclosed section is refused");
	ok(em_render("{{#a}}{{#b}}{{/a}}{{/b}}", v, false) == NULL, "crossed sections are refused");
	ok(em_render("{{/a}}", v, false) == NULL, "a stray close is refused");
	ok(em_render("{{bad name}}", v, false) == NULL, "a bad name is refused");
	ok(em_render("{{{raw}}", v, false) == NULL, "an unclosed raw tag is refused");
	char deep[400] = "";
	for (int i = 0; i < 17; i++)
		strcat(deep, "{{#a}}");
	for (int i = 0; i < 17; i++)
		strcat(deep, "{{/a}}");
	char err[160];
	ok(em_template_check(deep, err, sizeof(err)) < 0, "17 levels are refused: %s", err);
	ok(em_template_check("{{#x}}{{/x}}", err, sizeof(err)) == 0, "a good template passes");
	json_decref(v);
}

static void text_to_html(void)
{
	char *h = em_text_to_html("One <line>\nsame paragraph\n\nTwo & more\n");
	is_str(h, "<p>One &lt;line&gt;<br>\nsame paragraph</p>\n<p>Two &amp; more</p>",
	       "paragraphs and line breaks, escaped");
	free(h);
	h = em_text_to_html("");
	is_str(h, "", "empty text");
	free(h);
	h = em_text_to_html("\r\n\r\nx\r\n \r\n");
	is_str(h, "<p>x</p>\n", "CRLF and blank lines");
	free(h);
}

static void languages(void)
{
	ok(em_valid_language("en"), "en");
	ok(em_valid_language("pt-br"), "pt-br");
	ok(em_valid_language("gsw"), "three letters");
	ok(!em_valid_language("EN"), "upper case refused");
	ok(!em_valid_language("e"), "one letter refused");
	ok(!em_valid_language("en-"), "empty subtag refused");
	ok(!em_valid_language("../etc"), "path refused");
	ok(!em_valid_language(NULL), "NULL refused");
}

static void lookup(void)
{
	json_t *set =
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "en/default.txt", "en-default",
	              "en/call.published.txt", "en-call", "fr/default.txt", "fr-default",
	              "pt/call.published.txt", "pt-call", "pt-br/default.txt", "ptbr-default");
	is_str(em_template_find(set, "en", "call.published", "txt"), "en-call", "type first");
	is_str(em_template_find(set, "en", "other", "txt"), "en-default", "then default");
	is_str(em_template_find(set, "fr", "call.published", "txt"), "fr-default",
	       "the language's default before English's type");
	is_str(em_template_find(set, "de", "call.published", "txt"), "en-call",
	       "unknown language: English");
	is_str(em_template_find(set, "pt-br", "call.published", "txt"), "ptbr-default",
	       "a regional default before the primary language's type");
	is_str(em_template_find(set, "pt-br", "x", "txt"), "ptbr-default", "regional default");
	is_str(em_template_find(set, "pt-pt", "call.published", "txt"), "pt-call",
	       "primary subtag");
	ok(em_template_find(set, "en", "x", "html") == NULL, "nothing for a missing part");
	json_decref(set);
}

static void builtin(void)
{
	json_t *set = json_object();
	int n = 0;
	for (const struct em_builtin *t = email_builtin_templates; t->name; t++, n++) {
		char err[160] = "";
		ok(em_template_check(t->text, err, sizeof(err)) == 0, "built-in %s is valid %s",
		   t->name, err);
		json_object_set_new(set, t->name, json_string(t->text));
	}
	ok(n >= 3, "subject, text and HTML templates are built in");
	json_t *v = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "site_name", "Cluster",
	    "base_url", "https://c.example", "lang", "en", "title", "New <call>", "body",
	    "Line one\n\nLine two", "body_html", "<p>Line one</p>\n<p>Line two</p>",
	    "recipient_name", "Ann", "link", "https://c.example/calls/1", "unsubscribe_url",
	    "https://c.example/settings/notifications", "type", "call.published", "essential", 0);
	char *s = em_render(em_template_find(set, "en", "call.published", "subject"), v, false);
	is_str(s, "New <call>\n", "subject");
	free(s);
	char *t = em_render(em_template_find(set, "en", "call.published", "txt"), v, false);
	ok(t && strncmp(t, "Hello Ann,\n\nNew <call>\n\nLine one\n\nLine two\n", 43) == 0,
	   "text: greeting, title, body");
	ok(t && strstr(t, "Open it: https://c.example/calls/1"), "text: the link");
	ok(t && strstr(t, "https://c.example/settings/notifications"),
	   "text: where to unsubscribe");
	ok(t && !strstr(t, "{{"), "text: no tag left");
	free(t);
	char *h = em_render(em_template_find(set, "en", "call.published", "html"), v, true);
	ok(h && strstr(
	            h,
	            "<h1 style=\"margin:0;font-size:20px;line-height:1.4;\">New &lt;call&gt;</h1>"),
	   "HTML: the title, escaped");
	ok(h && strstr(h, "<p>Line one</p>\n<p>Line two</p>"), "HTML: the body as paragraphs");
	ok(h && strstr(h, "href=\"https://c.example/calls/1\""), "HTML: the link");
	ok(h && strstr(h, "Choose which e-mails you receive"), "HTML: the unsubscribe link");
	free(h);
	json_object_set_new(v, "unsubscribe_url", json_string(""));
	json_object_set_new(v, "recipient_name", json_string(""));
	t = em_render(em_template_find(set, "en", "security.login", "txt"), v, false);
	ok(t && strncmp(t, "Hello,\n", 7) == 0, "text without a name");
	ok(t && strstr(t, "always sent") && !strstr(t, "settings/notifications"),
	   "essential mail: no unsubscribe text");
	free(t);
	json_decref(v);
	json_decref(set);
}

int main(void)
{
	rendering();
	text_to_html();
	languages();
	lookup();
	builtin();
	return tap_done();
}
