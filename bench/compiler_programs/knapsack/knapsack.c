/* 0/1 knapsack and unbounded coin-change counting over pseudo-random items. */
#include <stdio.h>
#include <stdlib.h>

static unsigned long long seed;
static int rnd(int lo, int hi) {
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    return lo + (int)(seed % (unsigned long long)(hi - lo + 1));
}

long long best_value(const int *w, const int *v, int n, int cap, long long *dp) {
    for (int c = 0; c <= cap; c++) dp[c] = 0;
    for (int i = 0; i < n; i++)
        for (int c = cap; c >= w[i]; c--) {
            long long take = dp[c - w[i]] + v[i];
            if (take > dp[c]) dp[c] = take;
        }
    return dp[cap];
}

unsigned long long ways(const int *coins, int k, int target, unsigned long long *dp) {
    for (int t = 0; t <= target; t++) dp[t] = 0;
    dp[0] = 1;
    for (int i = 0; i < k; i++)
        for (int t = coins[i]; t <= target; t++) dp[t] += dp[t - coins[i]];
    return dp[target];
}

int main(void) {
    int n, cap;
    if (scanf("%d %d %llu", &n, &cap, &seed) != 3 || n <= 0 || cap <= 0) return 1;
    int *w = malloc(sizeof(int) * (size_t)n), *v = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) { w[i] = rnd(1, cap / 8 + 1); v[i] = rnd(1, 1000); }
    long long *dp = malloc(sizeof(long long) * (size_t)(cap + 1));
    unsigned long long *dq = malloc(sizeof(unsigned long long) * (size_t)(cap + 1));
    long long best = best_value(w, v, n, cap, dp);
    unsigned long long count = ways(w, n < 60 ? n : 60, cap, dq);
    printf("%lld %llu\n", best, count);
    free(w); free(v); free(dp); free(dq);
    return 0;
}
