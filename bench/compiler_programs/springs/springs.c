/* A chain of masses joined by springs, integrated with semi-implicit Euler steps; prints the
 * total energy and the position of the last mass (rounded). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void step(double *x, double *v, int n, double k, double dt, double damping) {
    for (int i = 1; i < n - 1; i++) {
        double f = k * (x[i - 1] - 2.0 * x[i] + x[i + 1]) - damping * v[i];
        v[i] += f * dt;
    }
    for (int i = 1; i < n - 1; i++) x[i] += v[i] * dt;
}

double energy(const double *x, const double *v, int n, double k) {
    double e = 0.0;
    for (int i = 0; i < n; i++) e += 0.5 * v[i] * v[i];
    for (int i = 0; i + 1 < n; i++) { double s = x[i + 1] - x[i] - 1.0; e += 0.5 * k * s * s; }
    return e;
}

int main(void) {
    int n, steps;
    if (scanf("%d %d", &n, &steps) != 2 || n < 3) return 1;
    double *x = malloc(sizeof(double) * (size_t)n), *v = calloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++) x[i] = i + 0.3 * sin(i * 0.7);
    for (int t = 0; t < steps; t++) step(x, v, n, 40.0, 0.001, 0.01);
    printf("%.6f %.6f\n", energy(x, v, n, 40.0), x[n / 2]);
    free(x); free(v);
    return 0;
}
