/* The start below N with the longest Collatz chain, and the total number of steps. */
#include <stdio.h>

int main(void) {
    long n;
    if (scanf("%ld", &n) != 1 || n < 2) return 1;
    long best = 1, best_len = 0;
    unsigned long total = 0;
    for (long s = 1; s < n; s++) {
        unsigned long x = (unsigned long)s;
        long len = 0;
        while (x != 1) {
            x = (x & 1) ? 3 * x + 1 : x >> 1;
            len++;
        }
        total += (unsigned long)len;
        if (len > best_len) {
            best_len = len;
            best = s;
        }
    }
    printf("%ld %ld %lu\n", best, best_len, total);
    return 0;
}
