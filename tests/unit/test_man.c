/* test_man.c - the manual pages against the tables they document.
 *
 * docs/man/tidemark.1 has, under COMMANDS, a subsection (.SS NAME) for
 * every command of the binary's command list, with one .TP entry per
 * option of the command's table ("-c, --config FILE"); docs/man/
 * tidemark.yml.5 has, under KEYS, a subsection per section of the
 * configuration schema (.SS TITLE, or .SS "TITLE (...)"), with one .TP
 * entry per key the section takes ("key: value"), giving its default.
 * Neither page documents a command, option, section or key that does not
 * exist. Both render without a warning from groff (-ww), at three widths.
 *
 * The commands are main.c's own list: main.c is compiled into this test
 * with its main() renamed, so a command registered there is checked here
 * without this file naming it. */
#include "harness.h"

#define main tidemark_main
#include "../../main.c"
#undef main

#include "../../common/config.h"

#include <libgen.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>


/* ---- reading the pages ------------------------------------------------------ */

/* docs/man/NAME from the project root (where tests run) or from beside
 * this binary (build/MODE/tests/), into path; 0, or -1 when not found. */
static int page_path(const char *name, char *path, size_t size)
{
    char exe[1024];
    snprintf(path, size, "docs/man/%s", name);
    if (access(path, R_OK) == 0)
        return 0;
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return -1;
    exe[len] = '\0';
    snprintf(path, size, "%s/../../../docs/man/%s", dirname(exe), name);
    return access(path, R_OK);
}

/* The page's roff text with the escapes a search must see through turned
 * into the characters they print (\- -, \(dq ", \  space) and font changes
 * and break points removed; malloc'd, or NULL when unreadable. */
static char *read_page(const char *name)
{
    char path[1200];
    if (page_path(name, path, sizeof path) != 0)
        return NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    static char roff[256 * 1024];
    size_t n = fread(roff, 1, sizeof roff - 1, fp);
    fclose(fp);
    roff[n] = '\0';
    static const char *const escapes[][2] = {
        {"\\-", "-"}, {"\\(dq", "\""}, {"\\(aq", "'"}, {"\\(lq", "\""}, {"\\(rq", "\""}, {"\\ ", " "},
        {"\\e", "\\"}, {"\\&", ""}, {"\\:", ""}, {"\\fB", ""}, {"\\fI", ""}, {"\\fR", ""}, {"\\fP", ""},
    };
    char *plain = malloc(n + 1), *out = plain;
    for (const char *p = roff; plain && *p;) {
        size_t e = 0;
        while (e < sizeof escapes / sizeof *escapes && strncmp(p, escapes[e][0], strlen(escapes[e][0])) != 0)
            e++;
        if (e == sizeof escapes / sizeof *escapes) {
            *out++ = *p++;
            continue;
        }
        out = stpcpy(out, escapes[e][1]);
        p += strlen(escapes[e][0]);
    }
    if (plain)
        *out = '\0';
    return plain;
}

/* The next line after p (or the end). */
static const char *next_line(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : p + strlen(p);
}

/* Whether the line at p is the request `request` (".SS", ".TP"...). */
static int is_request(const char *p, const char *request)
{
    size_t len = strlen(request);
    return strncmp(p, request, len) == 0 && (p[len] == ' ' || p[len] == '\n' || p[len] == '\0');
}

/* The title of the .SS line at p, quotes removed, into out. */
static void subsection_title(const char *p, char *out, size_t size)
{
    p += 3;
    p += strspn(p, " \"");
    snprintf(out, size, "%.*s", (int)strcspn(p, "\n"), p);
    size_t len = strlen(out);
    while (len && (out[len - 1] == '"' || out[len - 1] == ' '))
        out[--len] = '\0';
}

/* Whether a subsection titled `title` documents `name`: the title is the
 * name, or the name and a parenthesis ("database entry (dbs[])"). */
static int title_names(const char *title, const char *name)
{
    size_t len = strlen(name);
    return strncmp(title, name, len) == 0 && (title[len] == '\0' || strncmp(title + len, " (", 2) == 0);
}

/* The line after `.SH section`, or NULL. */
static const char *section_start(const char *page, const char *section)
{
    char line[100];
    snprintf(line, sizeof line, "\n.SH %s\n", section);
    const char *at = strstr(page, line);
    return at ? at + strlen(line) : NULL;
}

/* The body of the subsection of `section` that documents `name` (up to
 * the next .SS or .SH), malloc'd; NULL when there is none. */
static char *subsection(const char *page, const char *section, const char *name)
{
    char title[200];
    for (const char *p = section_start(page, section); p && *p && !is_request(p, ".SH"); p = next_line(p)) {
        if (!is_request(p, ".SS"))
            continue;
        subsection_title(p, title, sizeof title);
        if (!title_names(title, name))
            continue;
        const char *body = next_line(p), *end = body;
        while (*end && !is_request(end, ".SS") && !is_request(end, ".SH"))
            end = next_line(end);
        return strndup(body, (size_t)(end - body));
    }
    return NULL;
}

/* The tag line of the n-th .TP entry of body (its first line after .TP)
 * into tag, and the entry's whole text (tag and paragraph, up to the next
 * .TP, .PP or the end) into text; 0, or -1 when there are fewer. */
static int entry(const char *body, size_t n, char *tag, size_t tag_size, char *text, size_t text_size)
{
    for (const char *p = body; *p; p = next_line(p)) {
        if (!is_request(p, ".TP") || n--)
            continue;
        const char *start = next_line(p), *end = start;
        snprintf(tag, tag_size, "%.*s", (int)strcspn(start, "\n"), start);
        do
            end = next_line(end);
        while (*end && !is_request(end, ".TP") && !is_request(end, ".PP"));
        snprintf(text, text_size, "%.*s", (int)(end - start), start);
        return 0;
    }
    return -1;
}

/* ---- tidemark(1): commands and options -------------------------------------- */

/* Whether the tag names option --long (or -s when short_name): a word
 * of the tag, up to a comma, '=' or space. */
static int tag_has(const char *tag, const char *dashes, const char *name)
{
    size_t len = strlen(dashes) + strlen(name);
    char word[100];
    snprintf(word, sizeof word, "%s%s", dashes, name);
    for (const char *p = strstr(tag, word); p; p = strstr(p + 1, word))
        if ((p == tag || p[-1] == ' ' || p[-1] == '.' || p[-1] == '[') && strchr(", =|]", p[len]))
            return 1;
    return 0;
}

/* The option of command called --long, or NULL. */
static const struct cli_option *option_named(const struct cli_command *command, const char *name, size_t len)
{
    for (const struct cli_option *const *o = command->options; *o; o++)
        if (strlen((*o)->name) == len && strncmp((*o)->name, name, len) == 0)
            return *o;
    return NULL;
}

/* The option of command whose short name is c, or NULL. */
static const struct cli_option *option_short(const struct cli_command *command, char c)
{
    for (const struct cli_option *const *o = command->options; *o; o++)
        if ((*o)->short_name == c)
            return *o;
    return NULL;
}

/* Every option of the command's table has an entry naming its long and
 * short name and its value; returns how many do not (printed). */
static size_t options_documented(const struct cli_command *command, const char *body)
{
    size_t missing = 0;
    char tag[300], text[4096], letter[2] = {0};
    for (const struct cli_option *const *o = command->options; *o; o++) {
        size_t n = 0;
        while (entry(body, n, tag, sizeof tag, text, sizeof text) == 0 && !tag_has(tag, "--", (*o)->name))
            n++;
        letter[0] = (*o)->short_name;
        if (entry(body, n, tag, sizeof tag, text, sizeof text) != 0)
            fprintf(stderr, "  tidemark.1: '%s' has no entry for --%s\n", command->name, (*o)->name);
        else if ((*o)->short_name && !tag_has(tag, "-", letter))
            fprintf(stderr, "  tidemark.1: '%s' --%s's entry does not give -%c\n", command->name, (*o)->name,
                    (*o)->short_name);
        else if ((*o)->value_name && !strstr(tag, (*o)->value_name))
            fprintf(stderr, "  tidemark.1: '%s' --%s's entry does not give its value %s\n", command->name,
                    (*o)->name, (*o)->value_name);
        else
            continue;
        missing++;
    }
    return missing;
}

/* The options named in one tag ("-c, --config FILE") are the command's
 * (or -h, --help); returns how many are not (printed). */
static size_t tag_options_exist(const struct cli_command *command, const char *tag)
{
    size_t unknown = 0;
    for (const char *p = tag; (p = strchr(p, '-')) != NULL;) {
        int long_name = p[1] == '-';
        const char *name = p + (long_name ? 2 : 1);
        size_t len = strcspn(name, ", =|]\n");
        int word_start = p == tag || p[-1] == ' ';
        p = name + len;
        if (!word_start || len == 0)
            continue;
        int known = long_name ? (len == 4 && strncmp(name, "help", 4) == 0) || option_named(command, name, len)
                              : len == 1 && (name[0] == 'h' || option_short(command, name[0]));
        if (!known) {
            fprintf(stderr, "  tidemark.1: '%s' documents %s%.*s, which it does not take\n", command->name,
                    long_name ? "--" : "-", (int)len, name);
            unknown++;
        }
    }
    return unknown;
}

/* One command: its subsection, its usage, every option, no other. */
static size_t command_documented(const char *page, const struct cli_command *command)
{
    char *body = subsection(page, "COMMANDS", command->name), usage[100], tag[300], text[4096];
    if (!body) {
        fprintf(stderr, "  tidemark.1: no subsection '.SS %s' under COMMANDS\n", command->name);
        return 1;
    }
    size_t wrong = options_documented(command, body);
    snprintf(usage, sizeof usage, "tidemark %s", command->name);
    if (!strstr(body, usage) && ++wrong)
        fprintf(stderr, "  tidemark.1: '%s' has no usage line\n", command->name);
    snprintf(usage, sizeof usage, "tidemark %s", command->alias ? command->alias : command->name);
    if (!strstr(body, usage) && ++wrong)
        fprintf(stderr, "  tidemark.1: '%s' does not give its other spelling '%s'\n", command->name, usage);
    for (size_t n = 0; entry(body, n, tag, sizeof tag, text, sizeof text) == 0; n++)
        wrong += tag_options_exist(command, tag);
    free(body);
    return wrong;
}

/* Every subsection under COMMANDS is a command of the list (or one
 * documented ahead); returns how many are not (printed). */
static size_t subsections_are_commands(const char *page)
{
    size_t unknown = 0;
    char title[200];
    for (const char *p = section_start(page, "COMMANDS"); p && *p && !is_request(p, ".SH"); p = next_line(p)) {
        if (!is_request(p, ".SS"))
            continue;
        subsection_title(p, title, sizeof title);
        int known = 0;
        for (const struct cli_command *const *c = commands; *c && !known; c++)
            known = strcmp((*c)->name, title) == 0;
        if (!known && ++unknown)
            fprintf(stderr, "  tidemark.1: '.SS %s' under COMMANDS is not a command of tidemark\n", title);
    }
    return unknown;
}

/* tidemark(1) has an entry for every command of main.c's list and every
 * option of its table, and documents no other. */
static void test_page_documents_every_command_and_option(void)
{
    char *page = read_page("tidemark.1");
    ASSERT_TRUE(page != NULL);
    size_t count = 0, wrong = subsections_are_commands(page);
    for (const struct cli_command *const *c = commands; *c; c++, count++)
        wrong += command_documented(page, *c);
    free(page);
    ASSERT_TRUE(count >= 9);
    ASSERT_EQ(wrong, 0);
}

/* ---- tidemark.yml(5): sections and keys ------------------------------------- */

/* The key an entry's tag names (".BI "key: " value" -> "key"), into key. */
static void tag_key(const char *tag, char *key, size_t size)
{
    const char *p = tag;
    if (*p == '.')
        p += strcspn(p, " ");
    p += strspn(p, " \"");
    snprintf(key, size, "%.*s", (int)strcspn(p, ": \""), p);
}

/* Whether section `title` takes `key`, by the schema's list. */
static int section_takes(const struct config_key_doc *keys, size_t count, const char *title, const char *key)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(keys[i].section, title) == 0 && strcmp(keys[i].key, key) == 0)
            return 1;
    return 0;
}

/* The entry of key in the subsection body into text; 0, or -1. */
static int key_entry(const char *body, const char *key, char *text, size_t size)
{
    char tag[300], named[100];
    for (size_t n = 0; entry(body, n, tag, sizeof tag, text, size) == 0; n++) {
        tag_key(tag, named, sizeof named);
        if (strcmp(named, key) == 0)
            return 0;
    }
    return -1;
}

/* One key: an entry in its section's subsection, with its default. */
static size_t key_documented(const char *page, const struct config_key_doc *key)
{
    char *body = subsection(page, "KEYS", key->section), text[8192];
    size_t wrong = 1;
    if (!body)
        fprintf(stderr, "  tidemark.yml.5: no subsection '.SS %s' under KEYS\n", key->section);
    else if (key_entry(body, key->key, text, sizeof text) != 0)
        fprintf(stderr, "  tidemark.yml.5: %s key '%s' has no entry\n", key->section, key->key);
    else if (key->def && strcmp(key->type, "section") != 0 && !strstr(text, key->def))
        fprintf(stderr, "  tidemark.yml.5: the entry of %s key '%s' does not give its default '%s'\n", key->section,
                key->key, key->def);
    else
        wrong = 0;
    free(body);
    return wrong;
}

/* Every subsection under KEYS is a section of the schema, and each of its
 * entries a key that section takes; returns how many are not (printed). */
static size_t documented_keys_exist(const char *page, const struct config_key_doc *keys, size_t count)
{
    size_t unknown = 0;
    char title[200], tag[300], key[100], text[8192];
    for (const char *p = section_start(page, "KEYS"); p && *p && !is_request(p, ".SH"); p = next_line(p)) {
        if (!is_request(p, ".SS"))
            continue;
        subsection_title(p, title, sizeof title);
        const char *section = NULL;
        for (size_t i = 0; i < count && !section; i++)
            section = title_names(title, keys[i].section) ? keys[i].section : NULL;
        char *body = section ? subsection(page, "KEYS", section) : NULL;
        if (!section && ++unknown)
            fprintf(stderr, "  tidemark.yml.5: '.SS %s' under KEYS is not a section of the configuration\n", title);
        for (size_t n = 0; body && entry(body, n, tag, sizeof tag, text, sizeof text) == 0; n++) {
            tag_key(tag, key, sizeof key);
            if (!section_takes(keys, count, section, key) && ++unknown)
                fprintf(stderr, "  tidemark.yml.5: '%s' is documented under '%s', which does not take it\n", key,
                        section);
        }
        free(body);
    }
    return unknown;
}

/* tidemark.yml(5) has an entry for every key of every section of the
 * schema, with its literal default, and documents no other. */
static void test_page_documents_every_key(void)
{
    struct config_key_doc keys[256];
    size_t count = config_schema_docs(keys, 256);
    ASSERT_TRUE(count > 60 && count <= 256);
    char *page = read_page("tidemark.yml.5");
    ASSERT_TRUE(page != NULL);
    size_t wrong = documented_keys_exist(page, keys, count);
    for (size_t i = 0; i < count; i++)
        wrong += key_documented(page, &keys[i]);
    free(page);
    ASSERT_EQ(wrong, 0);
}

/* ---- rendering --------------------------------------------------------------- */

/* groff's warnings (-ww) rendering page at line length `width`, into
 * out; the exit status of groff, or -1 when it could not be run. */
static int groff_warnings(const char *page, const char *width, char *out, size_t size)
{
    char path[1200], command[1400];
    if (page_path(page, path, sizeof path) != 0)
        return -1;
    snprintf(command, sizeof command, "groff -man -Tutf8 -ww -z -rLL=%s '%s' 2>&1", width, path);
    FILE *fp = popen(command, "r");
    if (!fp)
        return -1;
    size_t n = fread(out, 1, size - 1, fp);
    out[n] = '\0';
    int status = pclose(fp);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Both pages render with man's macros, as man(1) shows them, without a
 * warning: at 60, 78 (man's default) and 100 columns. */
static void test_pages_render_without_warnings(void)
{
    static const char *const pages[] = {"tidemark.1", "tidemark.yml.5"};
    static const char *const widths[] = {"60n", "78n", "100n"};
    if (system("command -v groff >/dev/null 2>&1") != 0) {
        fprintf(stderr, "  groff is not installed: scripts/install-deps installs groff-base\n");
        ASSERT_TRUE(0);
    }
    char warnings[4096];
    for (size_t p = 0; p < 2; p++)
        for (size_t w = 0; w < 3; w++) {
            int status = groff_warnings(pages[p], widths[w], warnings, sizeof warnings);
            if (status != 0 || warnings[0])
                fprintf(stderr, "  %s at %s: groff exited %d: %s\n", pages[p], widths[w], status, warnings);
            ASSERT_EQ(status, 0);
            ASSERT_STR_EQ(warnings, "");
        }
}

int main(void)
{
    static const struct test_case cases[] = {
        {"man: tidemark(1) documents every command of main.c and each option of its table, and only those",
         test_page_documents_every_command_and_option},
        {"man: tidemark.yml(5) documents every key of the schema with its default, and only those",
         test_page_documents_every_key},
        {"man: both pages render without a groff warning at 60, 78 and 100 columns", test_pages_render_without_warnings},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
