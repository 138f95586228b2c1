/* Sorts pseudo-random keys with a hand-written quicksort (insertion sort for small ranges),
 * then counts inversions of a second sequence with merge sort. */
#include <stdio.h>
#include <stdlib.h>

static unsigned long long s;
static unsigned long long rnd(void) { s = s * 6364136223846793005ull + 1442695040888963407ull; return s >> 33; }

void quicksort(unsigned *a, long lo, long hi) {
    while (hi - lo > 16) {
        unsigned p = a[lo + (hi - lo) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { unsigned t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { quicksort(a, lo, j); lo = i; }
        else { quicksort(a, i, hi); hi = j; }
    }
    for (long i = lo + 1; i <= hi; i++) {
        unsigned x = a[i]; long j = i - 1;
        while (j >= lo && a[j] > x) { a[j + 1] = a[j]; j--; }
        a[j + 1] = x;
    }
}

long long inversions(int *a, int *tmp, int n) {
    if (n < 2) return 0;
    int h = n / 2;
    long long c = inversions(a, tmp, h) + inversions(a + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) {
        if (a[i] <= a[j]) tmp[k++] = a[i++];
        else { tmp[k++] = a[j++]; c += h - i; }
    }
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    for (k = 0; k < n; k++) a[k] = tmp[k];
    return c;
}

int main(void) {
    long n;
    if (scanf("%ld %llu", &n, &s) != 2 || n <= 0) return 1;
    unsigned *a = malloc(sizeof(unsigned) * (size_t)n);
    int *b = malloc(sizeof(int) * (size_t)n), *tmp = malloc(sizeof(int) * (size_t)n);
    for (long i = 0; i < n; i++) { a[i] = (unsigned)rnd(); b[i] = (int)(rnd() % 1000000); }
    quicksort(a, 0, n - 1);
    unsigned long long h = 0;
    for (long i = 0; i < n; i += 7) h = h * 1000003u + a[i];
    long long inv = inversions(b, tmp, (int)n);
    printf("%llu %lld\n", h, inv);
    return 0;
}
