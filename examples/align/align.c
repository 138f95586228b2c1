/* Global alignment scores (Needleman–Wunsch, linear gap penalty) between a query and many
 * pseudo-random DNA reads; prints the best score, its read and the sum of all scores.
 *
 * Input: query length, number of reads, read length, seed. */
#include <stdio.h>
#include <stdlib.h>

static unsigned long long state;

static char base(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return "ACGT"[state >> 62];
}

int align(const char *a, int n, const char *b, int m, int *row) {
    const int match = 2, mismatch = -1, gap = -2;
    for (int j = 0; j <= m; j++) row[j] = j * gap;
    for (int i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = i * gap;
        for (int j = 1; j <= m; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] == b[j - 1] ? match : mismatch);
            if (up + gap > best) best = up + gap;
            if (row[j - 1] + gap > best) best = row[j - 1] + gap;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

int main(void) {
    int n, reads, m;
    if (scanf("%d %d %d %llu", &n, &reads, &m, &state) != 4 || n <= 0 || m <= 0) return 1;
    char *query = malloc((size_t)n), *read = malloc((size_t)m);
    int *row = malloc(sizeof(int) * (size_t)(m + 1));
    for (int i = 0; i < n; i++) query[i] = base();
    long long total = 0;
    int best = -1000000000, best_read = -1;
    for (int r = 0; r < reads; r++) {
        for (int j = 0; j < m; j++) read[j] = base();
        int score = align(query, n, read, m, row);
        total += score;
        if (score > best) { best = score; best_read = r; }
    }
    printf("%d %d %lld\n", best, best_read, total);
    free(query); free(read); free(row);
    return 0;
}
