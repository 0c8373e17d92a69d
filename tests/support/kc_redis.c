/* See kc_redis.h. Talks to the server with a raw socket (PING), so the
 * test support library needs no Redis client. */
#include "kc_redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int kct_free_port(void)
{
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int pong(int port)
{
    struct sockaddr_in a = loopback(port);
    char buf[16] = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = 0;

    if (fd < 0)
        return 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        write(fd, "PING\r\n", 6) == 6 && read(fd, buf, sizeof(buf) - 1) > 0)
        ok = strncmp(buf, "+PONG", 5) == 0;
    close(fd);
    return ok;
}

static int start_on(kct_redis_t *r, int port);

int kct_redis_start(kct_redis_t *r, int port)
{
    /* A free port can be taken between the check and the bind (tests run
     * side by side): try a few. */
    for (int attempt = 0; attempt < (port ? 1 : 5); attempt++)
        if (start_on(r, port) == 0)
            return 0;
    return -1;
}

static int start_on(kct_redis_t *r, int port)
{
    char port_s[16];

    memset(r, 0, sizeof(*r));
    r->port = port ? port : kct_free_port();
    if (r->port <= 0)
        return -1;
    snprintf(port_s, sizeof(port_s), "%d", r->port);
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
    r->pid = fork();
    if (r->pid < 0)
        return -1;
    if (r->pid == 0) {
        /* Its banner and warnings are not the test's output. */
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execlp("redis-server", "redis-server", "--port", port_s, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", "/tmp", "--loglevel",
               "warning", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        int status;
        if (pong(r->port))
            return 0;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            fprintf(stderr, "redis-server exited (%s)\n",
                    WIFEXITED(status) && WEXITSTATUS(status) == 127 ? "not installed"
                                                                    : "failed to start");
            r->pid = 0;
            return -1;
        }
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    fprintf(stderr, "redis-server on port %d does not answer\n", r->port);
    kct_redis_stop(r);
    return -1;
}

void kct_redis_stop(kct_redis_t *r)
{
    if (!r || r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    r->pid = 0;
}
