/* Primes up to N with a byte sieve; then the count of twin primes and a sum of prime gaps
 * squared, and how many numbers below N are a sum of two primes in at most K ways. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *composite;

void sieve(int n) {
    memset(composite, 0, (size_t)n + 1);
    composite[0] = composite[1] = 1;
    for (long i = 2; i * i <= n; i++)
        if (!composite[i])
            for (long j = i * i; j <= n; j += i) composite[j] = 1;
}

long long gap_stats(int n, int *twins) {
    long long sq = 0;
    int last = 2;
    *twins = 0;
    for (int i = 3; i <= n; i++) {
        if (composite[i]) continue;
        if (i - last == 2) (*twins)++;
        sq += (long long)(i - last) * (i - last);
        last = i;
    }
    return sq;
}

int goldbach(int m) {
    int ways = 0;
    for (int p = 2; p <= m / 2; p++)
        if (!composite[p] && !composite[m - p]) ways++;
    return ways;
}

int main(void) {
    int n, m;
    if (scanf("%d %d", &n, &m) != 2 || n < 4 || m > n) return 1;
    composite = malloc((size_t)n + 1);
    sieve(n);
    int twins;
    long long sq = gap_stats(n, &twins);
    long long gsum = 0;
    for (int e = 4; e <= m; e += 2) gsum += goldbach(e);
    printf("%d %lld %lld\n", twins, sq, gsum);
    free(composite);
    return 0;
}
