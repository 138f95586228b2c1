/* Greatest common divisor and least common multiple of each pair of numbers on stdin. */
#include <stdio.h>

static unsigned long gcd(unsigned long a, unsigned long b) {
    while (b) {
        unsigned long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int main(void) {
    unsigned long a, b;
    while (scanf("%lu %lu", &a, &b) == 2) {
        unsigned long g = gcd(a, b);
        printf("%lu %lu\n", g, g ? a / g * b : 0);
    }
    return 0;
}
