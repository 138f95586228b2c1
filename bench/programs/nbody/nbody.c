/* A small planetary system integrated for a number of steps; prints the final energy. */
#include <math.h>
#include <stdio.h>

#define BODIES 5

struct body {
    double x, y, z, vx, vy, vz, m;
};

static double energy(const struct body *b) {
    double e = 0.0;
    for (int i = 0; i < BODIES; i++) {
        e += 0.5 * b[i].m * (b[i].vx * b[i].vx + b[i].vy * b[i].vy + b[i].vz * b[i].vz);
        for (int j = i + 1; j < BODIES; j++) {
            double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
            e -= b[i].m * b[j].m / sqrt(dx * dx + dy * dy + dz * dz);
        }
    }
    return e;
}

int main(void) {
    long steps;
    if (scanf("%ld", &steps) != 1 || steps < 0) return 1;
    struct body b[BODIES] = {
        {0, 0, 0, 0, 0, 0, 39.47},
        {4.84, -1.16, -0.10, 0.61, 2.81, -0.02, 0.037},
        {8.34, 4.12, -0.40, -1.01, 1.82, 0.008, 0.011},
        {12.89, -15.11, -0.22, 1.08, 0.87, -0.01, 0.0017},
        {15.38, -25.92, 0.18, 0.98, 0.59, -0.03, 0.0020},
    };
    const double dt = 0.01;
    for (long s = 0; s < steps; s++) {
        for (int i = 0; i < BODIES; i++)
            for (int j = i + 1; j < BODIES; j++) {
                double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
                double d2 = dx * dx + dy * dy + dz * dz;
                double mag = dt / (d2 * sqrt(d2));
                b[i].vx -= dx * b[j].m * mag;
                b[i].vy -= dy * b[j].m * mag;
                b[i].vz -= dz * b[j].m * mag;
                b[j].vx += dx * b[i].m * mag;
                b[j].vy += dy * b[i].m * mag;
                b[j].vz += dz * b[i].m * mag;
            }
        for (int i = 0; i < BODIES; i++) {
            b[i].x += dt * b[i].vx;
            b[i].y += dt * b[i].vy;
            b[i].z += dt * b[i].vz;
        }
    }
    printf("%.9f\n", energy(b));
    return 0;
}
