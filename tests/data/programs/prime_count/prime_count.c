#include <stdio.h>
#include <string.h>

static char composite[1000001];

int main(void) {
    int n;
    if (scanf("%d", &n) != 1 || n < 0 || n > 1000000) return 1;
    memset(composite, 0, sizeof composite);
    int count = 0;
    for (int i = 2; i <= n; i++) {
        if (composite[i]) continue;
        count++;
        for (long long j = (long long)i * i; j <= n; j += i) composite[j] = 1;
    }
    printf("%d\n", count);
    return 0;
}
