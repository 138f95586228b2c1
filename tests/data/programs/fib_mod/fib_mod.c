#include <stdio.h>

#define MOD 1000000007LL

int main(void) {
    long long n;
    if (scanf("%lld", &n) != 1) return 1;
    long long a = 0, b = 1;
    for (long long i = 0; i < n; i++) {
        long long c = (a + b) % MOD;
        a = b;
        b = c;
    }
    printf("%lld\n", a);
    return 0;
}
