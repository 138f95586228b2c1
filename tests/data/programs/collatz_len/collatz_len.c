#include <stdio.h>

int main(void) {
    long long limit;
    if (scanf("%lld", &limit) != 1) return 1;
    long long best_start = 1, best_len = 1;
    for (long long s = 1; s <= limit; s++) {
        long long x = s, len = 1;
        while (x != 1) {
            x = (x & 1) ? 3 * x + 1 : x / 2;
            len++;
        }
        if (len > best_len) {
            best_len = len;
            best_start = s;
        }
    }
    printf("%lld %lld\n", best_start, best_len);
    return 0;
}
