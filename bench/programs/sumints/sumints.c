/* Sum, minimum and maximum of the integers on stdin. */
#include <stdio.h>

int main(void) {
    long v, sum = 0, lo = 0, hi = 0;
    int count = 0;
    while (scanf("%ld", &v) == 1) {
        if (count == 0 || v < lo) lo = v;
        if (count == 0 || v > hi) hi = v;
        sum += v;
        count++;
    }
    printf("%d %ld %ld %ld\n", count, sum, lo, hi);
    return 0;
}
