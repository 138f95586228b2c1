#include <stdio.h>

int main(void) {
    unsigned long long x;
    while (scanf("%llu", &x) == 1) {
        int s = 0;
        do {
            s += (int)(x % 10);
            x /= 10;
        } while (x);
        printf("%d\n", s);
    }
    return 0;
}
