/* Product of two seeded n x n matrices of 32-bit integers (wrapping); prints a checksum. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    int n;
    unsigned int seed;
    if (scanf("%d %u", &n, &seed) != 2 || n < 1) return 1;
    unsigned int *a = malloc(sizeof(unsigned int) * (size_t)n * (size_t)n);
    unsigned int *b = malloc(sizeof(unsigned int) * (size_t)n * (size_t)n);
    unsigned int *c = calloc((size_t)n * (size_t)n, sizeof(unsigned int));
    if (!a || !b || !c) return 2;
    unsigned int x = seed;
    for (long i = 0; i < (long)n * n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        a[i] = x & 0xffff;
        b[i] = (x >> 16) & 0xffff;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            unsigned int aik = a[(long)i * n + k];
            for (int j = 0; j < n; j++) c[(long)i * n + j] += aik * b[(long)k * n + j];
        }
    unsigned long check = 0;
    for (long i = 0; i < (long)n * n; i++) check = check * 31 + c[i];
    printf("%lu\n", check);
    free(a);
    free(b);
    free(c);
    return 0;
}
