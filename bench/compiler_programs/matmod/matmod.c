/* Powers of a pseudo-random matrix modulo a prime, by repeated squaring. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD 1000003u

void multiply(const unsigned *a, const unsigned *b, unsigned *c, int n) {
    for (int i = 0; i < n; i++) {
        unsigned long long acc[512];
        for (int j = 0; j < n; j++) acc[j] = 0;
        for (int k = 0; k < n; k++) {
            unsigned long long x = a[i * n + k];
            for (int j = 0; j < n; j++) acc[j] += x * b[k * n + j];
            if ((k & 15) == 15)
                for (int j = 0; j < n; j++) acc[j] %= MOD;
        }
        for (int j = 0; j < n; j++) c[i * n + j] = (unsigned)(acc[j] % MOD);
    }
}

int main(void) {
    int n; long long e; unsigned s;
    if (scanf("%d %lld %u", &n, &e, &s) != 3 || n <= 0 || n > 512) return 1;
    size_t cells = (size_t)n * (size_t)n;
    unsigned *m = malloc(cells * sizeof *m), *r = malloc(cells * sizeof *r);
    unsigned *t = malloc(cells * sizeof *t);
    for (size_t i = 0; i < cells; i++) { s = s * 1664525u + 1013904223u; m[i] = (s >> 8) % MOD; }
    memset(r, 0, cells * sizeof *r);
    for (int i = 0; i < n; i++) r[i * n + i] = 1;
    while (e > 0) {
        if (e & 1) { multiply(r, m, t, n); memcpy(r, t, cells * sizeof *r); }
        multiply(m, m, t, n); memcpy(m, t, cells * sizeof *m);
        e >>= 1;
    }
    unsigned long long trace = 0, sum = 0;
    for (int i = 0; i < n; i++) trace += r[i * n + i];
    for (size_t i = 0; i < cells; i++) sum = (sum * 31 + r[i]) % 998244353u;
    printf("%llu %llu\n", trace, sum);
    free(m); free(r); free(t);
    return 0;
}
