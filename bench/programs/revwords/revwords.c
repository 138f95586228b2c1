/* Each line of stdin with its words in reverse order. */
#include <stdio.h>
#include <string.h>

int main(void) {
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        char *words[1024];
        int n = 0;
        for (char *w = strtok(line, " \t\r\n"); w && n < 1024; w = strtok(NULL, " \t\r\n"))
            words[n++] = w;
        for (int i = n - 1; i >= 0; i--) printf("%s%c", words[i], i ? ' ' : '\n');
        if (n == 0) putchar('\n');
    }
    return 0;
}
