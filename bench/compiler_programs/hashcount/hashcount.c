/* Counts distinct values and the most frequent value of a pseudo-random stream with an
 * open-addressing hash table. */
#include <stdio.h>
#include <stdlib.h>

typedef struct { unsigned long long key; int count; } Slot;
static Slot *table;
static unsigned long long mask;

static unsigned long long mix(unsigned long long x) {
    x ^= x >> 31; x *= 0x7fb5d329728ea185ull; x ^= x >> 27; x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

int add(unsigned long long key) {
    unsigned long long i = mix(key) & mask;
    while (table[i].count && table[i].key != key) i = (i + 1) & mask;
    if (!table[i].count) table[i].key = key;
    return ++table[i].count;
}

int main(void) {
    long n; unsigned long long range, x;
    if (scanf("%ld %llu %llu", &n, &range, &x) != 3 || range == 0) return 1;
    unsigned long long size = 1;
    while (size < 2 * range + 2) size <<= 1;
    mask = size - 1;
    table = calloc(size, sizeof *table);
    long distinct = 0; int most = 0; unsigned long long most_key = 0;
    for (long i = 0; i < n; i++) {
        x = x * 2862933555777941757ull + 3037000493ull;
        unsigned long long key = (x >> 20) % range;
        int c = add(key);
        if (c == 1) distinct++;
        if (c > most || (c == most && key < most_key)) { most = c; most_key = key; }
    }
    printf("%ld %llu %d\n", distinct, most_key, most);
    return 0;
}
