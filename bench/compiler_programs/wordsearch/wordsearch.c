/* Counts occurrences of several patterns in a pseudo-random text: naive search and KMP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long naive(const char *t, long n, const char *p, int m) {
    long c = 0;
    for (long i = 0; i + m <= n; i++) {
        int k = 0;
        while (k < m && t[i + k] == p[k]) k++;
        if (k == m) c++;
    }
    return c;
}

long kmp(const char *t, long n, const char *p, int m, int *fail) {
    fail[0] = -1;
    for (int i = 1, k = -1; i <= m; i++) {
        while (k >= 0 && p[k] != p[i - 1]) k = fail[k];
        fail[i] = ++k;
    }
    long c = 0;
    int k = 0;
    for (long i = 0; i < n; i++) {
        while (k >= 0 && p[k] != t[i]) k = fail[k];
        if (++k == m) { c++; k = fail[m]; }
    }
    return c;
}

int main(void) {
    long n; int alphabet, patterns, len; unsigned s;
    if (scanf("%ld %d %d %d %u", &n, &alphabet, &patterns, &len, &s) != 5 || len > 64) return 1;
    char *t = malloc((size_t)n + 1);
    for (long i = 0; i < n; i++) { s = s * 1103515245u + 12345u; t[i] = (char)('a' + (s >> 16) % (unsigned)alphabet); }
    t[n] = 0;
    char p[65]; int fail[66];
    long a = 0, b = 0;
    for (int q = 0; q < patterns; q++) {
        long at = (long)((unsigned)(q * 2654435761u) % (unsigned)(n - len));
        memcpy(p, t + at, (size_t)len); p[len] = 0;
        int m = 2 + q % (len - 1);
        a += naive(t, n, p, m);
        b += kmp(t, n, p, m, fail);
    }
    printf("%ld %ld\n", a, b);
    return 0;
}
