/* How many points of a size x size grid over [-2,1]x[-1.5,1.5] stay bounded for it steps. */
#include <stdio.h>

int main(void) {
    int size, iters;
    if (scanf("%d %d", &size, &iters) != 2 || size < 1) return 1;
    long inside = 0;
    for (int py = 0; py < size; py++) {
        double ci = -1.5 + 3.0 * py / size;
        for (int px = 0; px < size; px++) {
            double cr = -2.0 + 3.0 * px / size;
            double zr = 0.0, zi = 0.0;
            int k = 0;
            while (k < iters && zr * zr + zi * zi <= 4.0) {
                double t = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = t;
                k++;
            }
            inside += (k == iters);
        }
    }
    printf("%ld\n", inside);
    return 0;
}
