/* textstats: counting things in text buffers. */
#ifndef TEXTSTATS_H
#define TEXTSTATS_H

#include <stddef.h>
#include <stdint.h>

/* The build sets this (CMakeLists.txt, Makefile): a define the library cannot compile
 * without, as real projects have. */
#ifndef TEXTSTATS_TAB_WIDTH
#error "build textstats with -DTEXTSTATS_TAB_WIDTH=<n> (CMakeLists.txt and the Makefile do)"
#endif

struct textstats {
    uint64_t lines;   /* newline characters */
    uint64_t words;   /* maximal runs of non-space bytes */
    uint64_t columns; /* display width of the longest line, tabs expanded */
};

/* Count lines, words and the widest line of buf[0..n). */
void textstats_scan(const unsigned char *buf, size_t n, struct textstats *out);

/* How many bytes of buf[0..n) equal c. */
size_t textstats_count_byte(const unsigned char *buf, size_t n, unsigned char c);

#endif
