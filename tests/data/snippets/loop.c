#include <stdio.h>
static int a[1 << 16];
int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    for (int i = 0; i < (1 << 16); i++) a[i] = (i * 7) & 1023;
    long s = 0;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < (1 << 16); i++) s += a[i] ^ r;
    printf("%ld\n", s);
    return 0;
}
