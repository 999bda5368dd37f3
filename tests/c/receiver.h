/* A minimal HTTP/1.1 webhook receiver on 127.0.0.1 for the C tests: keep-alive, one thread
 * per connection, records every request, answers 200 after an optional delay. */
#ifndef TEST_RECEIVER_H
#define TEST_RECEIVER_H

#include <stddef.h>

typedef struct rx_request {
    char path[256];
    char *head;   /* the request line and headers, NUL-terminated */
    char *body;   /* NUL-terminated; body_len bytes */
    size_t body_len;
} rx_request;

typedef struct rx_server rx_server;

/* Starts a receiver that answers each request after delay_ms. */
rx_server *rx_start(int delay_ms);
int rx_port(const rx_server *rx);
/* Waits until at least n requests arrived or timeout_ms passed; returns the count. */
size_t rx_wait(rx_server *rx, size_t n, int timeout_ms);
size_t rx_count(rx_server *rx);
/* The i-th request (valid until rx_stop). */
const rx_request *rx_get(rx_server *rx, size_t i);
/* Copies header `name` (case-insensitive) of req into out; returns 1 if present. */
int rx_header(const rx_request *req, const char *name, char *out, size_t out_len);
/* Stops the receiver, cutting open connections, and frees everything. */
void rx_stop(rx_server *rx);
/* A 127.0.0.1 port where nothing listens. */
int rx_dead_port(void);

#endif
