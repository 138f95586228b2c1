/* Longest Collatz chain below N, and the total number of steps, with a small memo table. */
#include <stdio.h>
#include <stdlib.h>

static int *memo;
static long limit;

int chain(long long x) {
    int steps = 0;
    long long start = x;
    while (x != 1) {
        if (x < limit && memo[x]) { steps += memo[x]; break; }
        x = (x & 1) ? 3 * x + 1 : x >> 1;
        steps++;
    }
    if (start < limit) memo[start] = steps;
    return steps;
}

int main(void) {
    if (scanf("%ld", &limit) != 1 || limit < 2) return 1;
    memo = calloc((size_t)limit, sizeof *memo);
    long best = 1, total = 0;
    int best_len = 0;
    for (long i = 1; i < limit; i++) {
        int len = chain(i);
        total += len;
        if (len > best_len) { best_len = len; best = i; }
    }
    printf("%ld %d %ld\n", best, best_len, total);
    free(memo);
    return 0;
}
