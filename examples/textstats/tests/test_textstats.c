/* Unit tests: exit status 0 when every check passes. */
#include <stdio.h>
#include <string.h>

#include "textstats.h"

static int failures = 0;

static void check(const char *text, uint64_t lines, uint64_t words, uint64_t columns) {
    struct textstats s;
    textstats_scan((const unsigned char *)text, strlen(text), &s);
    if (s.lines != lines || s.words != words || s.columns != columns) {
        fprintf(stderr, "scan(\"%s\"): got %llu %llu %llu, want %llu %llu %llu\n", text,
                (unsigned long long)s.lines, (unsigned long long)s.words,
                (unsigned long long)s.columns, (unsigned long long)lines,
                (unsigned long long)words, (unsigned long long)columns);
        failures++;
    }
}

int main(void) {
    check("", 0, 0, 0);
    check("one", 0, 1, 3);
    check("one two\n", 1, 2, 7);
    check("  lead and trail  \n\n", 2, 3, 18);
    check("\tx\n", 1, 1, TEXTSTATS_TAB_WIDTH + 1);
    check("ab\tc\nlonger line here\n", 2, 5, 16);
    const unsigned char bytes[] = "a,b,,c,";
    if (textstats_count_byte(bytes, sizeof bytes - 1, ',') != 4) {
        fprintf(stderr, "count_byte: wrong count of ','\n");
        failures++;
    }
    if (textstats_count_byte(bytes, 0, 'a') != 0) {
        fprintf(stderr, "count_byte: an empty buffer has no bytes\n");
        failures++;
    }
    if (failures) return 1;
    printf("all checks passed\n");
    return 0;
}
