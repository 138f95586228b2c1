/* Count distinct values among n draws of a generator, with an open-addressing hash set. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    long n;
    unsigned int range;
    if (scanf("%ld %u", &n, &range) != 2 || n < 1 || range < 1) return 1;
    unsigned long cap = 1;
    while (cap < 2ul * (unsigned long)n) cap <<= 1;
    unsigned int *slot = calloc(cap, sizeof(unsigned int)); /* 0 = empty, else value + 1 */
    if (!slot) return 2;
    unsigned long x = 88172645463325252ul;
    long distinct = 0;
    for (long i = 0; i < n; i++) {
        x ^= x << 7;
        x ^= x >> 9;
        unsigned int v = (unsigned int)(x % range) + 1;
        unsigned long h = ((unsigned long)v * 0x9E3779B97F4A7C15ul) & (cap - 1);
        while (slot[h] != 0 && slot[h] != v) h = (h + 1) & (cap - 1);
        if (slot[h] == 0) {
            slot[h] = v;
            distinct++;
        }
    }
    printf("%ld\n", distinct);
    free(slot);
    return 0;
}
