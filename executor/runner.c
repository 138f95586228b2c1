/*
 * asmopt-runner: the first process inside the sandbox.
 *
 * It forks the program under test, applies resource limits to the program alone, waits for
 * it, and then kills and reaps every process the program left behind: the runner is a
 * child subreaper, so orphaned descendants (a daemon, the child of a program that exits at
 * once) are reparented to it and cannot outlive the run. The CPU time it reports is the
 * growth of its own RUSAGE_CHILDREN across the run, i.e. the CPU of every process of the
 * run that it reaped, so bubblewrap's start-up and this runner are never timed, and work
 * handed to a child is charged in full. The runner is not dumpable, so the program (same
 * uid) cannot reach its file descriptors or memory through /proc.
 *
 * One run (Sandbox.run):
 *
 *     asmopt-runner [--sandboxed] STATUS_FD CPU_SECONDS AS_BYTES NPROC FSIZE_BYTES NOFILE
 *                   PROGRAM [ARGS...]
 *
 * The program gets the runner's stdin, stdout and stderr; one status line goes to STATUS_FD:
 *
 *     <exited|signaled|error> <code-or-signal> <utime_us> <stime_us> <maxrss_kib>\n
 *
 * Serve (RunSession, one bubblewrap for many runs):
 *
 *     asmopt-runner --serve REQ_FD RESP_FD sandboxed|plain PROGRAM...
 *
 * Requests are read from REQ_FD, one at a time; each is answered on RESP_FD. Binary, native
 * byte order (the host is the same machine); sandbox.py holds the same layouts:
 *
 *     request  = struct request, then args_len bytes (argc NUL-terminated strings, argv[0]
 *                first), then stdin_len bytes of standard input
 *     response = struct response, then stdout_len bytes of stdout, then stderr_len of stderr
 *
 * The runner feeds stdin, collects stdout and stderr (together at most output_bytes; past
 * that the run is killed and flagged truncated), kills the run at wall_us (flagged timed
 * out), kills and reaps what is left, and in "sandboxed" mode wipes the state a program
 * could leave for the next run: /tmp, new entries in /dev and /dev/shm, System V IPC
 * objects (POSIX message queues are refused with RLIMIT_MSGQUEUE 0). When something cannot
 * be restored it sets RESP_ENDS and exits after answering; the host then starts a fresh
 * sandbox for the next run. End of file on REQ_FD ends the runner.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_MAGIC 0x71526d41u  /* "AmRq" */
#define RESPONSE_MAGIC 0x73526d41u /* "AmRs" */
#define READY_MAGIC 0x79526d41u    /* "AmRy": the runner waits for requests */
#define RESP_TIMED_OUT 1u
#define RESP_TRUNCATED 2u
#define RESP_ENDS 4u /* the runner exits after this response; start a new session */

enum { KIND_EXITED = 0, KIND_SIGNALED = 1, KIND_ERROR = 2 };

struct request {
    uint32_t magic;
    uint32_t seq;
    uint32_t program; /* index into the PROGRAM list */
    uint32_t argc;    /* strings in the args block, argv[0] included */
    uint64_t wall_us;
    uint64_t cpu_seconds;
    uint64_t as_bytes;
    uint64_t nproc;
    uint64_t fsize_bytes;
    uint64_t nofile;
    uint64_t output_bytes;
    uint64_t args_len;
    uint64_t stdin_len;
};

struct response {
    uint32_t magic;
    uint32_t seq;
    int32_t kind;
    int32_t value; /* exit code, signal, or errno */
    uint64_t utime_us;
    uint64_t stime_us;
    uint64_t maxrss_kib;
    uint64_t wall_us;
    uint64_t runner_cpu_us; /* the runner's own CPU while serving the run (see serve) */
    uint32_t flags;
    uint32_t reserved;
    uint64_t stdout_len;
    uint64_t stderr_len;
};

_Static_assert(sizeof(struct request) == 88, "request layout");
_Static_assert(sizeof(struct response) == 80, "response layout");

#define MAX_ARGS_LEN (4u << 20)
#define MAX_STDIN_LEN (1ull << 30)
#define CLEANUP_SECONDS 2

struct limits {
    rlim_t cpu, as, nproc, fsize, nofile;
};

/* What reaping the processes of one run found. */
struct tally {
    pid_t direct;      /* the program's own process */
    int direct_done;   /* it has been reaped */
    int direct_status; /* its wait status */
    long maxrss_kib;   /* largest ru_maxrss of anything reaped */
};

static int sandboxed;

static unsigned long long parse(const char *text) {
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        dprintf(2, "asmopt-runner: bad number '%s'\n", text);
        exit(125);
    }
    return value;
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t tv_us(struct timeval tv) {
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static void become_runner(void) {
    /* Orphans of the run come to us, not to init, so that we can kill and reap them. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        dprintf(2, "asmopt-runner: PR_SET_CHILD_SUBREAPER: %s\n", strerror(errno));
        exit(125);
    }
    /* The program runs as the same user: without this it could open /proc/<runner>/fd/N
     * (the status or response pipe) and forge a result, or write the runner's memory. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        dprintf(2, "asmopt-runner: PR_SET_DUMPABLE: %s\n", strerror(errno));
        exit(125);
    }
}

/* ---- the child: limits, then exec ------------------------------------------------------- */

static void set_limit(int resource, rlim_t value) {
    struct rlimit lim = {value, value};
    if (setrlimit(resource, &lim) != 0) {
        /* Lowering a limit never fails for a sane value; if it does, refuse to run. */
        dprintf(2, "asmopt-runner: setrlimit(%d) failed: %s\n", resource, strerror(errno));
        _exit(125);
    }
}

static void exec_program(const char *path, char **argv, const struct limits *lim) {
    /* Dispositions the runner changed (SIGPIPE) and its mask must not leak into the program. */
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    set_limit(RLIMIT_CORE, 0);
    set_limit(RLIMIT_CPU, lim->cpu);
    set_limit(RLIMIT_AS, lim->as);
    set_limit(RLIMIT_NPROC, lim->nproc);
    set_limit(RLIMIT_FSIZE, lim->fsize);
    set_limit(RLIMIT_NOFILE, lim->nofile);
    /* POSIX message queues would outlive the run in a session's IPC namespace: refuse them. */
    set_limit(RLIMIT_MSGQUEUE, 0);
    execv(path, argv);
    dprintf(2, "asmopt-runner: cannot execute %s: %s\n", path, strerror(errno));
    _exit(126);
}

/* ---- killing and reaping what a run left ------------------------------------------------- */

/* Reap every child that has ended; returns how many, or -1 once there is no child at all. */
static int reap_ended(struct tally *t) {
    int reaped = 0;
    for (;;) {
        int status = 0;
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        pid_t pid = wait4(-1, &status, WNOHANG | __WALL, &ru);
        if (pid > 0) {
            reaped++;
            if (ru.ru_maxrss > t->maxrss_kib) t->maxrss_kib = ru.ru_maxrss;
            if (pid == t->direct && !t->direct_done) {
                t->direct_done = 1;
                t->direct_status = status;
            }
            continue;
        }
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0 && errno == ECHILD) return reaped ? reaped : -1;
        return reaped;
    }
}

/* SIGKILL each of our children; returns how many were found. */
static int kill_children(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    int found = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[4096];
        long pid = 0;
        int digits = 0;
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] >= '0' && buf[i] <= '9') {
                    pid = pid * 10 + (buf[i] - '0');
                    digits = 1;
                } else if (digits) {
                    kill((pid_t)pid, SIGKILL);
                    found++;
                    pid = 0;
                    digits = 0;
                }
            }
        }
        if (digits) {
            kill((pid_t)pid, SIGKILL);
            found++;
        }
        close(fd);
        return found;
    }
    /* No CONFIG_PROC_CHILDREN: find our children by the parent pid in /proc/PID/stat. */
    DIR *proc = opendir("/proc");
    if (proc == NULL) return 0;
    struct dirent *entry;
    pid_t self = getpid();
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
        char stat_path[300], text[512];
        snprintf(stat_path, sizeof stat_path, "/proc/%s/stat", entry->d_name);
        int sfd = open(stat_path, O_RDONLY | O_CLOEXEC);
        if (sfd < 0) continue;
        ssize_t len = read(sfd, text, sizeof text - 1);
        close(sfd);
        if (len <= 0) continue;
        text[len] = '\0';
        char *close_paren = strrchr(text, ')'); /* the command name may hold anything */
        char state;
        int ppid;
        if (close_paren && sscanf(close_paren + 1, " %c %d", &state, &ppid) == 2 && ppid == self) {
            kill((pid_t)atoi(entry->d_name), SIGKILL);
            found++;
        }
    }
    closedir(proc);
    return found;
}

/* Kill every process of the run and reap them all. 0 when none is left, -1 if one could not
 * be reaped in time (the runner then ends: in a sandbox, that takes the rest with it). */
static int kill_and_reap_all(struct tally *t) {
    uint64_t deadline = now_us() + CLEANUP_SECONDS * 1000000u;
    unsigned pause_us = 50;
    for (;;) {
        /* Inside the sandbox's PID namespace every process but init and us belongs to the
         * run; one kill(-1) stops a fork bomb at once. Never outside a sandbox. */
        if (sandboxed) kill(-1, SIGKILL);
        int found = kill_children();
        int reaped = reap_ended(t);
        if (reaped < 0) return 0; /* ECHILD: nothing left */
        (void)found; /* none found but not ECHILD: dying, or being reparented to us */
        if (now_us() > deadline) return -1;
        if (reaped == 0) {
            struct timespec ts = {0, (long)pause_us * 1000};
            nanosleep(&ts, NULL);
            if (pause_us < 5000) pause_us *= 2;
        } else {
            pause_us = 50;
        }
    }
}

/* ---- one run ----------------------------------------------------------------------------- */

static int one_run(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--sandboxed") == 0) {
        sandboxed = 1;
        argv++;
        argc--;
    }
    if (argc < 8) {
        dprintf(2, "usage: asmopt-runner [--sandboxed] STATUS_FD CPU AS NPROC FSIZE NOFILE PROGRAM "
                   "[ARGS...]\n");
        return 125;
    }
    int status_fd = (int)parse(argv[1]);
    struct limits lim = {parse(argv[2]), parse(argv[3]), parse(argv[4]), parse(argv[5]),
                         parse(argv[6])};
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    become_runner();

    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    pid_t child = fork();
    if (child < 0) {
        dprintf(status_fd, "error %d 0 0 0\n", errno);
        return 125;
    }
    if (child == 0) exec_program(argv[7], &argv[7], &lim);

    struct tally t = {child, 0, 0, 0};
    for (;;) {
        int status = 0;
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        pid_t pid = wait4(child, &status, __WALL, &ru);
        if (pid == child) {
            t.direct_done = 1;
            t.direct_status = status;
            t.maxrss_kib = ru.ru_maxrss;
            break;
        }
        if (pid < 0 && errno != EINTR) {
            dprintf(status_fd, "error %d 0 0 0\n", errno);
            return 125;
        }
    }
    /* The program is done: whatever it started ends now and is charged to it. */
    if (kill_and_reap_all(&t) != 0) {
        dprintf(2, "asmopt-runner: processes of the run could not be reaped\n");
    }
    getrusage(RUSAGE_CHILDREN, &after);
    long long utime = (long long)(tv_us(after.ru_utime) - tv_us(before.ru_utime));
    long long stime = (long long)(tv_us(after.ru_stime) - tv_us(before.ru_stime));
    int status = t.direct_status;
    if (WIFSIGNALED(status)) {
        dprintf(status_fd, "signaled %d %lld %lld %ld\n", WTERMSIG(status), utime, stime,
                t.maxrss_kib);
        return 128 + WTERMSIG(status);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 125;
    dprintf(status_fd, "exited %d %lld %lld %ld\n", code, utime, stime, t.maxrss_kib);
    return code;
}

/* ---- serve: buffers and I/O ---------------------------------------------------------------- */

struct buf {
    char *data;
    size_t len, cap;
};

static int buf_add(struct buf *b, const char *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL) return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

/* Read exactly n bytes: 1 done, 0 end of file before any byte, -1 error or short read. */
static int read_full(int fd, void *dst, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)dst + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return (r == 0 && got == 0) ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

static int write_full(int fd, const void *src, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, (const char *)src + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        done += (size_t)w;
    }
    return 0;
}

struct output {
    struct buf out, err;
    uint64_t cap; /* stdout and stderr together */
    int truncated;
};

/* Read what is available on fd into dst. Returns 1 at end of file, 0 otherwise. */
static int collect(int fd, struct buf *dst, struct output *o) {
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN ? 0 : 1;
        if (n == 0) return 1;
        uint64_t room = o->cap - (o->out.len + o->err.len);
        if ((uint64_t)n > room) {
            o->truncated = 1;
            n = (ssize_t)room;
        }
        if (n > 0 && buf_add(dst, chunk, (size_t)n) != 0) o->truncated = 1;
        if (o->truncated) return 0;
    }
}

static void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static int pidfd_of(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    return -1;
#endif
}

/* Run one program to the end (or its limit), reap everything, fill in resp. */
static void serve_run(const char *path, char **argv, const struct limits *lim, uint64_t wall_us,
                      const char *input, size_t input_len, struct output *o,
                      struct response *resp) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) != 0) goto fail;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        goto fail;
    }
    if (pipe2(err, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        goto fail;
    }
    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    uint64_t started = now_us();
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(in[0]), close(in[1]), close(out[0]), close(out[1]), close(err[0]), close(err[1]);
        errno = e;
        goto fail;
    }
    if (child == 0) {
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) _exit(125);
        exec_program(path, argv, lim); /* every other descriptor is close-on-exec */
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    int in_fd = in[1], out_fd = out[0], err_fd = err[0];
    set_nonblocking(in_fd);
    set_nonblocking(out_fd);
    set_nonblocking(err_fd);
    size_t fed = 0;
    if (input_len == 0) {
        close(in_fd);
        in_fd = -1;
    }
    int pidfd = pidfd_of(child);
    struct tally t = {child, 0, 0, 0};
    uint64_t deadline = started + wall_us;
    int timed_out = 0;
    while (!t.direct_done && !o->truncated) {
        uint64_t now = now_us();
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        struct pollfd fds[4];
        int nfds = 0, i_pid = -1, i_in = -1, i_out = -1, i_err = -1;
        if (pidfd >= 0) fds[i_pid = nfds++] = (struct pollfd){pidfd, POLLIN, 0};
        if (in_fd >= 0) fds[i_in = nfds++] = (struct pollfd){in_fd, POLLOUT, 0};
        if (out_fd >= 0) fds[i_out = nfds++] = (struct pollfd){out_fd, POLLIN, 0};
        if (err_fd >= 0) fds[i_err = nfds++] = (struct pollfd){err_fd, POLLIN, 0};
        uint64_t wait_ms = (deadline - now + 999) / 1000;
        if (pidfd < 0 && wait_ms > 2) wait_ms = 2; /* no pidfd: look at the child often */
        int ready = poll(fds, (nfds_t)nfds, (int)wait_ms);
        if (ready < 0 && errno != EINTR) break;
        if (ready > 0) {
            if (i_in >= 0 && fds[i_in].revents) {
                ssize_t w = write(in_fd, input + fed, input_len - fed);
                if (w > 0) fed += (size_t)w;
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || fed >= input_len) {
                    close(in_fd); /* done, or the program closed its stdin (EPIPE) */
                    in_fd = -1;
                }
            }
            if (i_out >= 0 && fds[i_out].revents && collect(out_fd, &o->out, o)) {
                close(out_fd);
                out_fd = -1;
            }
            if (i_err >= 0 && fds[i_err].revents && collect(err_fd, &o->err, o)) {
                close(err_fd);
                err_fd = -1;
            }
        }
        if (pidfd < 0 || (ready > 0 && fds[i_pid].revents)) {
            int status = 0;
            struct rusage ru;
            memset(&ru, 0, sizeof ru);
            if (wait4(child, &status, WNOHANG | __WALL, &ru) == child) {
                t.direct_done = 1;
                t.direct_status = status;
                t.maxrss_kib = ru.ru_maxrss;
            }
        }
    }
    /* Ended, timed out or over the output cap: nothing of the run survives this. */
    int leftover = kill_and_reap_all(&t);
    if (in_fd >= 0) close(in_fd);
    /* Every writer is gone: what is still in the pipes is the rest of the output. */
    if (out_fd >= 0) {
        collect(out_fd, &o->out, o);
        close(out_fd);
    }
    if (err_fd >= 0) {
        collect(err_fd, &o->err, o);
        close(err_fd);
    }
    if (pidfd >= 0) close(pidfd);
    getrusage(RUSAGE_CHILDREN, &after);
    resp->wall_us = now_us() - started;
    resp->utime_us = tv_us(after.ru_utime) - tv_us(before.ru_utime);
    resp->stime_us = tv_us(after.ru_stime) - tv_us(before.ru_stime);
    resp->maxrss_kib = (uint64_t)t.maxrss_kib;
    if (timed_out) resp->flags |= RESP_TIMED_OUT;
    if (o->truncated) resp->flags |= RESP_TRUNCATED;
    if (leftover != 0) resp->flags |= RESP_ENDS;
    if (!t.direct_done) {
        resp->kind = KIND_SIGNALED; /* could not be reaped: report it killed */
        resp->value = SIGKILL;
    } else if (WIFSIGNALED(t.direct_status)) {
        resp->kind = KIND_SIGNALED;
        resp->value = WTERMSIG(t.direct_status);
    } else {
        resp->kind = KIND_EXITED;
        resp->value = WIFEXITED(t.direct_status) ? WEXITSTATUS(t.direct_status) : 125;
    }
    return;
fail:
    resp->kind = KIND_ERROR;
    resp->value = errno;
}

/* ---- serve: what a run may leave behind in the sandbox, and wiping it ----------------------- */

struct entry {
    char name[256];
    dev_t dev;
    ino_t ino;
    mode_t mode;
};

static struct entry dev_snapshot[128];
static int dev_count;
static struct stat tmp_stat, dev_stat, shm_stat;
static int have_shm;

/* Remove everything inside dirfd. 0 when it is empty afterwards. */
static int remove_contents(int dirfd, int depth) {
    if (depth > 32) return -1;
    for (int pass = 0; pass < 8; pass++) {
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return -1;
        DIR *dir = fdopendir(fd);
        if (dir == NULL) {
            close(fd);
            return -1;
        }
        int left = 0, removed = 0;
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            if (unlinkat(dirfd, e->d_name, 0) == 0) {
                removed++;
                continue;
            }
            if (errno == EISDIR) {
                fchmodat(dirfd, e->d_name, 0700, 0); /* it may have made itself unwritable */
                int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                    remove_contents(sub, depth + 1);
                    close(sub);
                }
                if (unlinkat(dirfd, e->d_name, AT_REMOVEDIR) == 0) {
                    removed++;
                    continue;
                }
            }
            left++;
        }
        closedir(dir);
        if (left == 0) return 0;
        if (removed == 0) return -1;
    }
    return -1;
}

static int same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
           (a->st_mode & S_IFMT) == (b->st_mode & S_IFMT);
}

/* Empty a directory we own and give it back its mode; 0 on success. */
static int wipe_dir(const char *path, const struct stat *orig) {
    struct stat st;
    if (lstat(path, &st) != 0 || !same_file(&st, orig)) return -1;
    if (st.st_mode != orig->st_mode && chmod(path, orig->st_mode & 07777) != 0) return -1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = remove_contents(fd, 0);
    close(fd);
    return rc;
}

static void snapshot_state(void) {
    if (lstat("/tmp", &tmp_stat) != 0 || lstat("/dev", &dev_stat) != 0) {
        dprintf(2, "asmopt-runner: no /tmp or /dev in the sandbox\n");
        exit(125);
    }
    have_shm = lstat("/dev/shm", &shm_stat) == 0 && S_ISDIR(shm_stat.st_mode);
    DIR *dir = opendir("/dev");
    struct dirent *e;
    while (dir && (e = readdir(dir)) != NULL && dev_count < 128) {
        struct stat st;
        if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        struct entry *s = &dev_snapshot[dev_count++];
        snprintf(s->name, sizeof s->name, "%s", e->d_name);
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->mode = st.st_mode;
    }
    if (dir) closedir(dir);
}

static int restore_dev(void) {
    int ok = 1;
    struct stat st;
    if (lstat("/dev", &st) != 0 || !same_file(&st, &dev_stat)) return 0;
    if (st.st_mode != dev_stat.st_mode && chmod("/dev", dev_stat.st_mode & 07777) != 0) ok = 0;
    int fd = open("/dev", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return 0;
    }
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        int known = -1;
        for (int i = 0; i < dev_count; i++)
            if (strcmp(dev_snapshot[i].name, e->d_name) == 0) known = i;
        if (known < 0) { /* made by the run: remove it */
            if (unlinkat(fd, e->d_name, 0) != 0) {
                int sub = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                    fchmod(sub, 0700);
                    remove_contents(sub, 0);
                    close(sub);
                }
                if (unlinkat(fd, e->d_name, AT_REMOVEDIR) != 0) ok = 0;
            }
            continue;
        }
        seen++;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            st.st_ino != dev_snapshot[known].ino || st.st_dev != dev_snapshot[known].dev ||
            st.st_mode != dev_snapshot[known].mode)
            ok = 0; /* replaced or changed (a device node cannot be put back): start afresh */
    }
    closedir(dir);
    if (seen != dev_count) ok = 0; /* something was removed */
    if (have_shm && wipe_dir("/dev/shm", &shm_stat) != 0) ok = 0;
    return ok;
}

/* Remove every System V IPC object (the session's IPC namespace outlives a run). 1 if none
 * is left. */
static int clean_sysv(void) {
    static const char *const lists[] = {"/proc/sysvipc/shm", "/proc/sysvipc/sem",
                                        "/proc/sysvipc/msg"};
    int ok = 1;
    for (int round = 0; round < 2; round++) {
        int found = 0;
        for (int k = 0; k < 3; k++) {
            FILE *f = fopen(lists[k], "re");
            if (f == NULL) continue;
            char line[512];
            int header = 1;
            while (fgets(line, sizeof line, f)) {
                if (header) {
                    header = 0;
                    continue;
                }
                int id;
                if (sscanf(line, "%*d %d", &id) != 1) continue;
                found++;
                if (k == 0) shmctl(id, IPC_RMID, NULL);
                if (k == 1) semctl(id, 0, IPC_RMID);
                if (k == 2) msgctl(id, IPC_RMID, NULL);
            }
            fclose(f);
        }
        if (found == 0) return ok;
        if (round == 1) ok = 0;
    }
    return ok;
}

/* Put the sandbox back as it was before the run. 1 if it is, 0 if the session must end. */
static int restore_state(void) {
    int ok = 1;
    if (wipe_dir("/tmp", &tmp_stat) != 0) ok = 0;
    if (!restore_dev()) ok = 0;
    if (!clean_sysv()) ok = 0;
    return ok;
}

/* ---- serve: the loop ----------------------------------------------------------------------- */

static int serve(int argc, char **argv) {
    if (argc < 6) {
        dprintf(2, "usage: asmopt-runner --serve REQ_FD RESP_FD sandboxed|plain PROGRAM...\n");
        return 125;
    }
    int req_fd = (int)parse(argv[2]);
    int resp_fd = (int)parse(argv[3]);
    sandboxed = strcmp(argv[4], "sandboxed") == 0;
    char **programs = &argv[5];
    uint32_t nprograms = (uint32_t)(argc - 5);
    fcntl(req_fd, F_SETFD, FD_CLOEXEC);
    fcntl(resp_fd, F_SETFD, FD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN); /* a program that closes its stdin must not kill us */
    become_runner();
    if (sandboxed) snapshot_state();
    /* Ready: the host starts its CPU count from here, so bubblewrap's start-up and ours are
     * never charged to the first run. */
    uint32_t ready = READY_MAGIC;
    if (write_full(resp_fd, &ready, sizeof ready) != 0) return 3;

    for (;;) {
        struct request req;
        int got = read_full(req_fd, &req, sizeof req);
        if (got == 0) return 0; /* the host closed the session */
        if (got < 0 || req.magic != REQUEST_MAGIC || req.program >= nprograms ||
            req.argc == 0 || req.argc > 65536 || req.args_len > MAX_ARGS_LEN ||
            req.stdin_len > MAX_STDIN_LEN) {
            dprintf(2, "asmopt-runner: bad request\n");
            return 3;
        }
        char *args = malloc(req.args_len + 1);
        char *input = malloc(req.stdin_len ? req.stdin_len : 1);
        char **child_argv = calloc(req.argc + 1, sizeof(char *));
        if (args == NULL || input == NULL || child_argv == NULL) {
            dprintf(2, "asmopt-runner: out of memory for a request\n");
            return 3;
        }
        if ((req.args_len && read_full(req_fd, args, req.args_len) != 1) ||
            (req.stdin_len && read_full(req_fd, input, req.stdin_len) != 1)) {
            dprintf(2, "asmopt-runner: short request\n");
            return 3;
        }
        args[req.args_len] = '\0';
        size_t pos = 0;
        for (uint32_t i = 0; i < req.argc; i++) {
            if (pos >= req.args_len) {
                dprintf(2, "asmopt-runner: bad argument block\n");
                return 3;
            }
            child_argv[i] = args + pos;
            pos += strlen(args + pos) + 1;
        }
        struct limits lim = {req.cpu_seconds, req.as_bytes, req.nproc, req.fsize_bytes,
                             req.nofile};
        struct output o;
        memset(&o, 0, sizeof o);
        o.cap = req.output_bytes;
        struct response resp;
        memset(&resp, 0, sizeof resp);
        resp.magic = RESPONSE_MAGIC;
        resp.seq = req.seq;
        struct rusage self_before, self_after;
        getrusage(RUSAGE_SELF, &self_before);
        serve_run(programs[req.program], child_argv, &lim, req.wall_us, input, req.stdin_len,
                  &o, &resp);
        if (sandboxed && !restore_state()) resp.flags |= RESP_ENDS;
        /* The host charges the run with its cgroup's CPU minus this: the runner's own work
         * (feeding stdin, collecting output, wiping) is not the program's. */
        getrusage(RUSAGE_SELF, &self_after);
        resp.runner_cpu_us = tv_us(self_after.ru_utime) + tv_us(self_after.ru_stime) -
                             tv_us(self_before.ru_utime) - tv_us(self_before.ru_stime);
        resp.stdout_len = o.out.len;
        resp.stderr_len = o.err.len;
        int sent = write_full(resp_fd, &resp, sizeof resp) == 0 &&
                   write_full(resp_fd, o.out.data, o.out.len) == 0 &&
                   write_full(resp_fd, o.err.data, o.err.len) == 0;
        free(o.out.data);
        free(o.err.data);
        free(args);
        free(input);
        free(child_argv);
        if (!sent || (resp.flags & RESP_ENDS)) return sent ? 0 : 3;
    }
}

/* ---- launch: enter a cgroup, drop to the sandbox user, exec bubblewrap ------------------------ */

/* asmopt-runner --launch [CGROUP_PROCS...] -- UID|- GID|- PROGRAM [ARGS...]
 *
 * Runs on the host, before bubblewrap. Joining the cgroup first means every process the
 * sandbox ever holds is born inside it, so its CPU time is counted by the kernel whoever
 * reaps (or does not reap) it; then the privileges are dropped, in the order that cannot be
 * undone (groups, gid, uid). */
static int launch(int argc, char **argv) {
    int i = 2;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        int fd = open(argv[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) {
            dprintf(2, "asmopt-runner: cannot join cgroup %s: %s\n", argv[i], strerror(errno));
            return 125;
        }
        close(fd);
    }
    if (argc - i < 4) {
        dprintf(2, "usage: asmopt-runner --launch [CGROUP_PROCS...] -- UID|- GID|- PROGRAM "
                   "[ARGS...]\n");
        return 125;
    }
    char **rest = &argv[i + 1];
    if (strcmp(rest[0], "-") != 0) {
        gid_t gid = (gid_t)parse(rest[1]);
        uid_t uid = (uid_t)parse(rest[0]);
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
            dprintf(2, "asmopt-runner: cannot drop to uid %u: %s\n", (unsigned)uid, strerror(errno));
            return 125;
        }
    }
    execv(rest[2], &rest[2]);
    dprintf(2, "asmopt-runner: cannot execute %s: %s\n", rest[2], strerror(errno));
    return 126;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--launch") == 0) return launch(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "--serve") == 0) return serve(argc, argv);
    return one_run(argc, argv);
}
