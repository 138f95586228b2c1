/* Sort n seeded pseudo-random integers with a hand-written quicksort; prints a checksum. */
#include <stdio.h>
#include <stdlib.h>

static void sort(int *v, long lo, long hi) {
    while (hi - lo > 16) {
        int p = v[lo + (hi - lo) / 2];
        long i = lo, j = hi - 1;
        while (i <= j) {
            while (v[i] < p) i++;
            while (v[j] > p) j--;
            if (i <= j) {
                int t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (j + 1 - lo < hi - i) {
            sort(v, lo, j + 1);
            lo = i;
        } else {
            sort(v, i, hi);
            hi = j + 1;
        }
    }
    for (long k = lo + 1; k < hi; k++) {
        int t = v[k];
        long m = k;
        while (m > lo && v[m - 1] > t) {
            v[m] = v[m - 1];
            m--;
        }
        v[m] = t;
    }
}

int main(void) {
    long n;
    unsigned long seed;
    if (scanf("%ld %lu", &n, &seed) != 2 || n < 1) return 1;
    int *v = malloc(sizeof(int) * (size_t)n);
    if (!v) return 2;
    unsigned long x = seed | 1;
    for (long i = 0; i < n; i++) {
        x = x * 6364136223846793005ul + 1442695040888963407ul;
        v[i] = (int)(x >> 33);
    }
    sort(v, 0, n);
    unsigned long check = 0;
    for (long i = 0; i < n; i += 97) check = check * 1000003u + (unsigned long)v[i];
    printf("%d %d %lu\n", v[0], v[n - 1], check);
    free(v);
    return 0;
}
