/* For every number up to N: digit sum, digit product and whether it is a palindrome in base
 * 2 and 10, by brute force; prints a few aggregates. */
#include <stdio.h>

static int digit_sum(long x) { int s = 0; while (x) { s += x % 10; x /= 10; } return s; }

static int palindrome(long x, int base) {
    long r = 0, y = x;
    while (y) { r = r * base + y % base; y /= base; }
    return r == x;
}

long long product(long x) { long long p = 1; while (x) { p *= x % 10; x /= 10; } return p; }

int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 1;
    long long sums = 0, prods = 0; long both = 0, harshad = 0;
    for (long i = 1; i <= n; i++) {
        int s = digit_sum(i);
        sums += s;
        if (i % s == 0) harshad++;
        prods += product(i) % 1000;
        if (palindrome(i, 10) && palindrome(i, 2)) both++;
    }
    printf("%lld %lld %ld %ld\n", sums, prods, harshad, both);
    return 0;
}
