/*
 * asmopt-runner: the first process inside the sandbox.
 *
 * It forks the program under test, applies resource limits to it alone, waits for it, and
 * writes one status line to a file descriptor the host passed in:
 *
 *     <exited|signaled|error> <code-or-signal> <utime_us> <stime_us> <maxrss_kib>\n
 *
 * The CPU time is the rusage of the program's process tree as the kernel accounts it when
 * the program is reaped, so bubblewrap's start-up and this runner are never timed.
 *
 * usage: asmopt-runner STATUS_FD CPU_SECONDS AS_BYTES NPROC FSIZE_BYTES NOFILE PROGRAM [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void set_limit(int resource, rlim_t value) {
    struct rlimit lim = {value, value};
    if (setrlimit(resource, &lim) != 0) {
        /* Lowering a limit never fails for a sane value; if it does, refuse to run. */
        dprintf(2, "asmopt-runner: setrlimit(%d) failed: %s\n", resource, strerror(errno));
        _exit(125);
    }
}

static unsigned long long parse(const char *text) {
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    if (end == text || *end != '\0') {
        dprintf(2, "asmopt-runner: bad number '%s'\n", text);
        exit(125);
    }
    return value;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        dprintf(2, "usage: asmopt-runner STATUS_FD CPU AS NPROC FSIZE NOFILE PROGRAM [ARGS...]\n");
        return 125;
    }
    int status_fd = (int)parse(argv[1]);
    rlim_t cpu = parse(argv[2]);
    rlim_t as = parse(argv[3]);
    rlim_t nproc = parse(argv[4]);
    rlim_t fsize = parse(argv[5]);
    rlim_t nofile = parse(argv[6]);

    pid_t child = fork();
    if (child < 0) {
        dprintf(status_fd, "error %d 0 0 0\n", errno);
        return 125;
    }
    if (child == 0) {
        close(status_fd);
        set_limit(RLIMIT_CORE, 0);
        set_limit(RLIMIT_CPU, cpu);
        set_limit(RLIMIT_AS, as);
        set_limit(RLIMIT_NPROC, nproc);
        set_limit(RLIMIT_FSIZE, fsize);
        set_limit(RLIMIT_NOFILE, nofile);
        execv(argv[7], &argv[7]);
        dprintf(2, "asmopt-runner: cannot execute %s: %s\n", argv[7], strerror(errno));
        _exit(126);
    }

    int status = 0;
    struct rusage usage;
    memset(&usage, 0, sizeof usage);
    while (wait4(child, &status, 0, &usage) < 0) {
        if (errno != EINTR) {
            dprintf(status_fd, "error %d 0 0 0\n", errno);
            return 125;
        }
    }
    long long utime = (long long)usage.ru_utime.tv_sec * 1000000LL + usage.ru_utime.tv_usec;
    long long stime = (long long)usage.ru_stime.tv_sec * 1000000LL + usage.ru_stime.tv_usec;
    if (WIFSIGNALED(status)) {
        dprintf(status_fd, "signaled %d %lld %lld %ld\n", WTERMSIG(status), utime, stime,
                usage.ru_maxrss);
        return 128 + WTERMSIG(status);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 125;
    dprintf(status_fd, "exited %d %lld %lld %ld\n", code, utime, stime, usage.ru_maxrss);
    return code;
}
