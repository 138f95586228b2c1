#include "textstats.h"

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

void textstats_scan(const unsigned char *buf, size_t n, struct textstats *out) {
    uint64_t lines = 0, words = 0, widest = 0, column = 0;
    int in_word = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = buf[i];
        if (c == '\n') {
            lines++;
            if (column > widest) widest = column;
            column = 0;
        } else if (c == '\t') {
            column += TEXTSTATS_TAB_WIDTH - column % TEXTSTATS_TAB_WIDTH;
        } else {
            column++;
        }
        if (is_space(c)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    if (column > widest) widest = column;
    out->lines = lines;
    out->words = words;
    out->columns = widest;
}

size_t textstats_count_byte(const unsigned char *buf, size_t n, unsigned char c) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) count += buf[i] == c;
    return count;
}
