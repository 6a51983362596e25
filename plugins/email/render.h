/* render.h — e-mail templates for the email plugin: a small Mustache-like language,
 * plain text turned into HTML paragraphs, and the choice of a template by language and
 * notification type. Pure functions: unit-tested by tests/unit/test_email_template.c. */
#ifndef SP_EMAIL_RENDER_H
#define SP_EMAIL_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Renders tmpl with vars (a JSON object, borrowed). Tags:
 *   {{name}}               the value; HTML-escaped when html is set
 *   {{{name}}}             the value as it is
 *   {{#name}}...{{/name}}  the block when the value is set: a non-empty string, true, a
 *                          non-zero number, a non-empty array or object
 *   {{^name}}...{{/name}}  the block when it is not
 *   {{! comment }}         nothing
 * Names are [A-Za-z0-9_.]+; a dotted name walks objects ("data.url"). A missing value
 * renders empty. A section or comment tag alone on its line removes that line. Returns
 * a new string (free()), or NULL when out of memory or when em_template_check refuses
 * tmpl. */
char *em_render(const char *tmpl, const json_t *vars, bool html);

/* 0 when tmpl is well formed (tags closed, names valid, sections properly nested, at
 * most 16 deep), else -1 with a reason in err. */
int em_template_check(const char *tmpl, char *err, size_t errlen);

/* Plain text as HTML (new string): escaped, blank lines separate <p> paragraphs, other
 * line breaks become <br>. */
char *em_text_to_html(const char *text);

/* A language tag as templates are keyed: 2 or 3 lower-case letters, optionally "-" and
 * 2 to 8 lower-case letters or digits ("en", "fr", "pt-br"). */
bool em_valid_language(const char *lang);

/* The template text for part ("subject", "txt" or "html") of a notification of type in
 * language lang, from set (a JSON object "LANG/NAME.PART" → text, borrowed): the first
 * of LANG/TYPE.PART, LANG/default.PART, the same for the primary subtag of LANG ("pt"
 * for "pt-br"), then for "en". NULL when none exists. */
const char *em_template_find(const json_t *set, const char *lang, const char *type,
                             const char *part);

/* Templates built into the module (generated from plugins/email/templates/). */
struct em_builtin {
	const char *name; /* "en/default.txt" */
	const char *text;
};

#endif
