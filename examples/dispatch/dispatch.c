/* A tiny stack-machine interpreter: the kind of branchy dispatch loop where the compiler's
 * choices (block layout, jump tables, profile feedback) decide the speed.
 *
 * Input: the number of iterations N. Output: the value the program leaves on the stack. */
#include <stdio.h>

enum { PUSH, ADD, SUB, MUL, DUP, SWAP, JNZ, DEC, POP, HALT, XOR, SHR };

static unsigned long run(const int *prog, long n) {
    unsigned long stack[64];  /* unsigned: wrap-around is defined */
    int sp = 0;
    int pc = 4;
    stack[sp++] = 0;
    stack[sp++] = (unsigned long)n;
    for (;;) {
        int op = prog[pc++];
        switch (op) {
        case PUSH: stack[sp++] = prog[pc++]; break;
        case ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case MUL: sp--; stack[sp - 1] *= stack[sp]; break;
        case XOR: sp--; stack[sp - 1] ^= stack[sp]; break;
        case SHR: stack[sp - 1] >>= 3; break;
        case DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case SWAP: { unsigned long t = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = t; } break;
        case DEC: stack[sp - 1]--; break;
        case JNZ: { int target = prog[pc++]; if (stack[--sp]) pc = target; } break;
        case POP: sp--; break;
        case HALT: return stack[0];
        }
    }
}

int main(void) {
    long n;
    if (scanf("%ld", &n) != 1 || n < 1) return 1;
    /* acc = ((acc * 7) ^ 3) + (((acc * 7) ^ 3) >> 3), repeated n times */
    static const int prog[] = {
        PUSH, 0, PUSH, 0,
        /* 4: */ SWAP, PUSH, 7, MUL, PUSH, 3, XOR, DUP, SHR, ADD, SWAP, DEC, DUP, JNZ, 4,
        POP, HALT,
    };
    printf("%lu\n", run(prog, n));
    return 0;
}
