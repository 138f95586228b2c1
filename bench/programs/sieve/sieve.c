/* Count the primes below N and sum them modulo 2^64 (sieve of Eratosthenes). */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    long n;
    if (scanf("%ld", &n) != 1 || n < 2) return 1;
    unsigned char *composite = calloc((size_t)n, 1);
    if (!composite) return 2;
    for (long i = 2; i * i < n; i++)
        if (!composite[i])
            for (long j = i * i; j < n; j += i) composite[j] = 1;
    long count = 0;
    unsigned long sum = 0;
    for (long i = 2; i < n; i++)
        if (!composite[i]) {
            count++;
            sum += (unsigned long)i;
        }
    printf("%ld %lu\n", count, sum);
    free(composite);
    return 0;
}
