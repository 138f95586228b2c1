/* Shortest paths in a pseudo-random grid maze: BFS from many sources, summing distances. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rows, cols;
static char *wall;
static int *dist, *queue;

static unsigned rng = 1;
static unsigned next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }

long long bfs(int start) {
    for (int i = 0; i < rows * cols; i++) dist[i] = -1;
    int head = 0, tail = 0;
    dist[start] = 0;
    queue[tail++] = start;
    long long total = 0;
    while (head < tail) {
        int cell = queue[head++];
        int r = cell / cols, c = cell % cols, d = dist[cell] + 1;
        total += d - 1;
        int nb[4] = {r > 0 ? cell - cols : -1, r + 1 < rows ? cell + cols : -1,
                     c > 0 ? cell - 1 : -1, c + 1 < cols ? cell + 1 : -1};
        for (int k = 0; k < 4; k++) {
            int x = nb[k];
            if (x >= 0 && !wall[x] && dist[x] < 0) { dist[x] = d; queue[tail++] = x; }
        }
    }
    return total + tail;
}

int main(void) {
    int sources, density;
    if (scanf("%d %d %d %d %u", &rows, &cols, &density, &sources, &rng) != 5) return 1;
    int n = rows * cols;
    wall = malloc((size_t)n); dist = malloc(sizeof(int) * (size_t)n);
    queue = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) wall[i] = (int)(next() % 100) < density;
    long long sum = 0;
    for (int s = 0; s < sources; s++) {
        int start = (int)(next() % (unsigned)n);
        wall[start] = 0;
        sum += bfs(start);
    }
    printf("%lld\n", sum);
    return 0;
}
