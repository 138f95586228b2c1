/* Benchmark: scan a generated text ROUNDS times and print what was counted, so that a
 * run's output also says whether the library is right.
 *
 * usage: bench_textstats [KIB] [ROUNDS]   (defaults: 256 KiB, 20 rounds) */
#include <stdio.h>
#include <stdlib.h>

#include "textstats.h"

static unsigned char *make_text(size_t n) {
    static const char *words[] = {"the", "quick", "brown", "fox", "jumps", "over", "a",
                                  "lazy", "dog", "\tindented", "end.\n", "x"};
    unsigned char *buf = malloc(n ? n : 1);
    unsigned long state = 12345;
    size_t i = 0;
    while (i < n) {
        state = state * 6364136223846793005UL + 1442695040888963407UL;
        const char *w = words[(state >> 33) % 12];
        while (*w && i < n) buf[i++] = (unsigned char)*w++;
        if (i < n) buf[i++] = ((state >> 20) & 7) == 0 ? '\n' : ' ';
    }
    return buf;
}

int main(int argc, char **argv) {
    size_t kib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    size_t n = kib * 1024;
    unsigned char *text = make_text(n);
    struct textstats s = {0, 0, 0};
    uint64_t total = 0;
    for (int r = 0; r < rounds; r++) {
        textstats_scan(text + r % 7, n > 7 ? n - r % 7 : n, &s);
        total += s.lines + s.words + s.columns;
        total += textstats_count_byte(text, n, 'e');
    }
    printf("lines %llu words %llu widest %llu total %llu\n", (unsigned long long)s.lines,
           (unsigned long long)s.words, (unsigned long long)s.columns,
           (unsigned long long)total);
    free(text);
    return 0;
}
