#define _GNU_SOURCE
#include "receiver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 512
#define MAX_REQUESTS 20000

struct rx_server {
    int listen_fd, port, delay_ms, stopping;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    int conn_fds[MAX_CONNS];
    pthread_t conn_threads[MAX_CONNS];
    size_t conns;
    rx_request *requests;
    size_t count;
};

struct conn_arg {
    rx_server *rx;
    int fd;
};

static void record(rx_server *rx, const char *head, size_t head_len, const char *body, size_t body_len) {
    pthread_mutex_lock(&rx->lock);
    if (rx->count < MAX_REQUESTS) {
        rx_request *r = &rx->requests[rx->count++];
        r->head = strndup(head, head_len);
        r->body = malloc(body_len + 1);
        memcpy(r->body, body, body_len);
        r->body[body_len] = '\0';
        r->body_len = body_len;
        const char *sp = strchr(r->head, ' ');
        const char *end = sp ? strchr(sp + 1, ' ') : NULL;
        size_t n = (sp && end) ? (size_t)(end - sp - 1) : 0;
        if (n >= sizeof r->path) n = sizeof r->path - 1;
        memcpy(r->path, sp ? sp + 1 : "", n);
        r->path[n] = '\0';
    }
    pthread_cond_broadcast(&rx->arrived);
    pthread_mutex_unlock(&rx->lock);
}

static void *serve(void *p) {
    struct conn_arg arg = *(struct conn_arg *)p;
    free(p);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        char *end = len ? memmem(buf, len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t head_len = (size_t)(end - buf) + 2, body_at = head_len + 2;
            size_t content_length = 0;
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            if (cl && cl < end) content_length = strtoul(cl + 17, NULL, 10);
            if (body_at + content_length > cap) {
                cap = body_at + content_length;
                buf = realloc(buf, cap);
            }
            if (len >= body_at + content_length) {
                record(arg.rx, buf, head_len, buf + body_at, content_length);
                if (arg.rx->delay_ms) {
                    struct timespec ts = {arg.rx->delay_ms / 1000, (arg.rx->delay_ms % 1000) * 1000000L};
                    nanosleep(&ts, NULL);
                }
                static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if (send(arg.fd, ok, sizeof ok - 1, MSG_NOSIGNAL) < 0) break;
                size_t used = body_at + content_length;
                memmove(buf, buf + used, len - used);
                len -= used;
                continue;
            }
        }
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = read(arg.fd, buf + len, cap - len);
        if (n <= 0) break;
        len += (size_t)n;
    }
    free(buf);
    return NULL;
}

static void *accept_loop(void *p) {
    rx_server *rx = p;
    for (;;) {
        int fd = accept(rx->listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) continue;
            return NULL;
        }
        pthread_mutex_lock(&rx->lock);
        if (rx->stopping || rx->conns == MAX_CONNS) {
            pthread_mutex_unlock(&rx->lock);
            close(fd);
            continue;
        }
        struct conn_arg *arg = malloc(sizeof *arg);
        arg->rx = rx;
        arg->fd = fd;
        rx->conn_fds[rx->conns] = fd;
        pthread_create(&rx->conn_threads[rx->conns], NULL, serve, arg);
        rx->conns++;
        pthread_mutex_unlock(&rx->lock);
    }
}

rx_server *rx_start(int delay_ms) {
    rx_server *rx = calloc(1, sizeof *rx);
    rx->requests = calloc(MAX_REQUESTS, sizeof *rx->requests);
    rx->delay_ms = delay_ms;
    pthread_mutex_init(&rx->lock, NULL);
    pthread_cond_init(&rx->arrived, NULL);
    rx->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof addr;
    if (bind(rx->listen_fd, (struct sockaddr *)&addr, addr_len) != 0 || listen(rx->listen_fd, 512) != 0) abort();
    getsockname(rx->listen_fd, (struct sockaddr *)&addr, &addr_len);
    rx->port = ntohs(addr.sin_port);
    pthread_create(&rx->acceptor, NULL, accept_loop, rx);
    return rx;
}

int rx_port(const rx_server *rx) { return rx->port; }

size_t rx_wait(rx_server *rx, size_t n, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&rx->lock);
    while (rx->count < n && pthread_cond_timedwait(&rx->arrived, &rx->lock, &deadline) == 0) {
    }
    size_t count = rx->count;
    pthread_mutex_unlock(&rx->lock);
    return count;
}

size_t rx_count(rx_server *rx) { return rx_wait(rx, 0, 0); }

const rx_request *rx_get(rx_server *rx, size_t i) {
    pthread_mutex_lock(&rx->lock);
    const rx_request *r = i < rx->count ? &rx->requests[i] : NULL;
    pthread_mutex_unlock(&rx->lock);
    return r;
}

int rx_header(const rx_request *req, const char *name, char *out, size_t out_len) {
    size_t name_len = strlen(name);
    for (const char *line = strstr(req->head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, name_len) == 0 && h[name_len] == ':') {
            const char *v = h + name_len + 1;
            while (*v == ' ') v++;
            const char *end = strstr(v, "\r\n");
            size_t n = end ? (size_t)(end - v) : strlen(v);
            if (n >= out_len) n = out_len - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 1;
        }
    }
    return 0;
}

void rx_stop(rx_server *rx) {
    pthread_mutex_lock(&rx->lock);
    rx->stopping = 1;
    pthread_mutex_unlock(&rx->lock);
    shutdown(rx->listen_fd, SHUT_RDWR);
    close(rx->listen_fd);
    pthread_join(rx->acceptor, NULL);
    for (size_t i = 0; i < rx->conns; i++) shutdown(rx->conn_fds[i], SHUT_RDWR);
    for (size_t i = 0; i < rx->conns; i++) {
        pthread_join(rx->conn_threads[i], NULL);
        close(rx->conn_fds[i]);
    }
    for (size_t i = 0; i < rx->count; i++) {
        free(rx->requests[i].head);
        free(rx->requests[i].body);
    }
    free(rx->requests);
    pthread_mutex_destroy(&rx->lock);
    pthread_cond_destroy(&rx->arrived);
    free(rx);
}

int rx_dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    bind(fd, (struct sockaddr *)&addr, len);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    return ntohs(addr.sin_port);
}
