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
        ok = strncmp(buf, "+PONG", 5) == 0 || strncmp(buf, "-NOAUTH", 7) == 0;
    close(fd);
    return ok;
}

static int start_on(kct_redis_t *r, int port, const char *password, int unix_socket);

int kct_redis_start(kct_redis_t *r, int port)
{
    return kct_redis_start_ex(r, port, NULL, 0);
}

int kct_redis_start_ex(kct_redis_t *r, int port, const char *password, int unix_socket)
{
    /* A free port can be taken between the check and the bind (tests run
     * side by side): try a few. */
    for (int attempt = 0; attempt < (port ? 1 : 5); attempt++)
        if (start_on(r, port, password, unix_socket) == 0)
            return 0;
    return -1;
}

static int start_on(kct_redis_t *r, int port, const char *password, int unix_socket)
{
    char port_s[16];
    const char *argv[32];
    int argc = 0;

    memset(r, 0, sizeof(*r));
    r->port = port ? port : kct_free_port();
    if (r->port <= 0)
        return -1;
    snprintf(port_s, sizeof(port_s), "%d", r->port);
    if (password)
        snprintf(r->password, sizeof(r->password), "%s", password);
    snprintf(r->url, sizeof(r->url), "redis://%s%s%s127.0.0.1:%d", password ? ":" : "",
             password ? password : "", password ? "@" : "", r->port);
    if (unix_socket) {
        snprintf(r->sock, sizeof(r->sock), "/tmp/kct_redis_%d_%d.sock", (int)getpid(),
                 r->port);
        snprintf(r->unix_url, sizeof(r->unix_url), "unix:%s%s%s", r->sock,
                 password ? "?password=" : "", password ? password : "");
    }
    static const char *const base[] = {"redis-server",
                                       "--port",
                                       NULL,
                                       "--bind",
                                       "127.0.0.1",
                                       "--save",
                                       "",
                                       "--appendonly",
                                       "no",
                                       "--dir",
                                       "/tmp",
                                       "--enable-debug-command",
                                       "local",
                                       "--loglevel",
                                       "warning",
                                       "--daemonize",
                                       "no"};
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        argv[argc++] = base[i] ? base[i] : port_s;
    if (password) {
        argv[argc++] = "--requirepass";
        argv[argc++] = r->password;
    }
    if (unix_socket) {
        argv[argc++] = "--unixsocket";
        argv[argc++] = r->sock;
        argv[argc++] = "--unixsocketperm";
        argv[argc++] = "700";
    }
    argv[argc] = NULL;
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
        execvp("redis-server", (char *const *)argv);
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
    if (r->sock[0])
        unlink(r->sock);
}
