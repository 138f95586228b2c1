/* Levenshtein distance between two pseudo-random DNA strings of length n (seeded). */
#include <stdio.h>
#include <stdlib.h>

static unsigned int state;
static unsigned int next(void) {
    state = state * 1103515245u + 12345u;
    return state >> 16;
}

int main(void) {
    int n;
    unsigned int seed;
    if (scanf("%d %u", &n, &seed) != 2 || n < 1) return 1;
    state = seed;
    char *a = malloc((size_t)n), *b = malloc((size_t)n);
    int *row = malloc(sizeof(int) * (size_t)(n + 1));
    if (!a || !b || !row) return 2;
    for (int i = 0; i < n; i++) a[i] = "ACGT"[next() & 3];
    for (int i = 0; i < n; i++) b[i] = (next() % 5 == 0) ? "ACGT"[next() & 3] : a[i];
    for (int j = 0; j <= n; j++) row[j] = j;
    for (int i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= n; j++) {
            int up = row[j];
            int cost = diag + (a[i - 1] != b[j - 1]);
            int del = up + 1, ins = row[j - 1] + 1;
            int m = cost < del ? cost : del;
            row[j] = m < ins ? m : ins;
            diag = up;
        }
    }
    printf("%d\n", row[n]);
    free(a);
    free(b);
    free(row);
    return 0;
}
