/* The program the editor suite (../run.mjs) works on: shaped like examples/align/align.c
 * (base() first, align() on line 15 and the hottest, then main), but align() is a loop that
 * clang turns into a closed form and gcc -O3 does not, so that a faster candidate exists on
 * any machine, however noisy. Input: n, seed. */
#include <stdio.h>
#include <stdlib.h>

static unsigned long long state;

static unsigned base(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(state >> 61);
}

__attribute__((noinline)) unsigned align(unsigned n, unsigned k) {
    unsigned s = 0;
    for (unsigned i = 0; i < n; i++) s += i * i * k + i;
    return s;
}

int main(void) {
    unsigned n;
    if (scanf("%u %llu", &n, &state) != 2) return 1;
    unsigned total = 0;
    for (int r = 0; r < 4; r++) total += align(n, base() + 1);
    printf("%u\n", total);
    return 0;
}
