/* All-pairs shortest paths (Floyd–Warshall) on a pseudo-random weighted digraph; prints the
 * sum of finite distances and the graph's diameter. */
#include <stdio.h>
#include <stdlib.h>

#define INF 1000000000

int main(void) {
    int n, density; unsigned s;
    if (scanf("%d %d %u", &n, &density, &s) != 3 || n <= 0) return 1;
    int *d = malloc(sizeof(int) * (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            s = s * 1664525u + 1013904223u;
            d[i * n + j] = i == j ? 0 : ((s >> 24) % 100 < (unsigned)density ? 1 + (int)((s >> 8) % 1000) : INF);
        }
    for (int k = 0; k < n; k++)
        for (int i = 0; i < n; i++) {
            int dik = d[i * n + k];
            if (dik == INF) continue;
            for (int j = 0; j < n; j++) {
                int via = dik + d[k * n + j];
                if (via < d[i * n + j]) d[i * n + j] = via;
            }
        }
    long long sum = 0; int diameter = 0;
    for (int i = 0; i < n * n; i++)
        if (d[i] < INF) { sum += d[i]; if (d[i] > diameter) diameter = d[i]; }
    printf("%lld %d\n", sum, diameter);
    free(d);
    return 0;
}
