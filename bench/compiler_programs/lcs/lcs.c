/* Longest common subsequence and edit distance of two pseudo-random strings. */
#include <stdio.h>
#include <stdlib.h>

static unsigned int state;
static int next_char(int alphabet) {
    state = state * 1103515245u + 12345u;
    return (int)((state >> 16) % (unsigned)alphabet);
}

int lcs(const char *a, int n, const char *b, int m, int *row) {
    for (int j = 0; j <= m; j++) row[j] = 0;
    for (int i = 1; i <= n; i++) {
        int diag = 0;
        for (int j = 1; j <= m; j++) {
            int up = row[j];
            int best = a[i - 1] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
            row[j] = best;
        }
    }
    return row[m];
}

int edit(const char *a, int n, const char *b, int m, int *row) {
    for (int j = 0; j <= m; j++) row[j] = j;
    for (int i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= m; j++) {
            int up = row[j];
            int cost = diag + (a[i - 1] != b[j - 1]);
            int del = up + 1, ins = row[j - 1] + 1;
            int best = cost < del ? cost : del;
            row[j] = best < ins ? best : ins;
            diag = up;
        }
    }
    return row[m];
}

int main(void) {
    int n, m, alphabet;
    if (scanf("%d %d %d %u", &n, &m, &alphabet, &state) != 4) return 1;
    char *a = malloc((size_t)n), *b = malloc((size_t)m);
    for (int i = 0; i < n; i++) a[i] = (char)('a' + next_char(alphabet));
    for (int j = 0; j < m; j++) b[j] = (char)('a' + next_char(alphabet));
    int *row = malloc(sizeof(int) * (size_t)(m + 1));
    printf("%d %d\n", lcs(a, n, b, m, row), edit(a, n, b, m, row));
    free(a); free(b); free(row);
    return 0;
}
