/* The C API of webhook_notification.h exercised from C against a real local receiver.
 * Prints "N passed, N failed" last; exits non-zero on any failure.
 * WEBHOOK_TEST_QUICK=1 (set under valgrind) shrinks the loops and skips timing checks. */
#define _GNU_SOURCE
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "receiver.h"
#include "webhook_notification.h"

static int passed, failed, quick;

#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (cond) {                                                  \
            passed++;                                                \
        } else {                                                     \
            failed++;                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                            \
            fputc('\n', stderr);                                     \
        }                                                            \
    } while (0)

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Returns the status and frees the error message, checking it is set iff status != OK. */
static int status_of(int status, char *error, const char *expect_in_message) {
    CHECK((status == WEBHOOK_OK) == (error == NULL), "status %d, error %s", status, error ? error : "(null)");
    if (expect_in_message) {
        CHECK(error && strstr(error, expect_in_message), "message '%s' lacks '%s'", error ? error : "(null)",
              expect_in_message);
    }
    webhook_string_free(error);
    return status;
}

static WebhookPlugin *plugin_for(const char *config) {
    WebhookPlugin *p = NULL;
    char *error = NULL;
    int rc = webhook_plugin_new(config, "CTest", &p, &error);
    CHECK(rc == WEBHOOK_OK && p, "new: %d %s", rc, error ? error : "");
    webhook_string_free(error);
    return p;
}

/* A JSON number field of the stats document, e.g. "\"delivered\":". */
static long stat_of(WebhookPlugin *p, const char *field) {
    char *stats = NULL, *error = NULL;
    CHECK(webhook_plugin_stats(p, &stats, &error) == WEBHOOK_OK, "stats");
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    const char *at = stats ? strstr(stats, key) : NULL;
    long value = at ? strtol(at + strlen(key), NULL, 10) : -1;
    webhook_string_free(stats);
    return value;
}

static void test_versions(void) {
    CHECK(webhook_abi_version() == WEBHOOK_ABI_VERSION, "abi %u", webhook_abi_version());
    CHECK(strlen(webhook_version()) >= 5, "version %s", webhook_version());
}

static const char *HOOKS[][3] = {
    {"tool_post_invoke", "{\"name\":\"search\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}", NULL},
    {"tool_post_invoke", "{\"name\":\"search\",\"result\":{\"isError\":true,\"content\":[{\"type\":\"text\",\"text\":\"down\"}]}}", NULL},
    {"prompt_post_fetch", "{\"prompt_id\":\"greet\",\"result\":{}}", NULL},
    {"resource_post_fetch", "{\"uri\":\"file:///a\",\"content\":{}}", NULL},
    {"tool_pre_invoke", "{\"name\":\"search\"}", "{\"code\":\"RATE_LIMIT\",\"reason\":\"Rate limit exceeded\"}"},
    {"prompt_pre_fetch", "{\"prompt_id\":\"p\"}", "{\"code\":\"PII\",\"reason\":\"PII detected\"}"},
    {"resource_pre_fetch", "{\"uri\":\"u\"}", "{\"code\":\"CONTENT_MODERATION\",\"reason\":\"harmful content\"}"},
    {"tool_pre_invoke", "{\"name\":\"t\"}", "{\"code\":\"DENY\",\"reason\":\"deny list\"}"},
};
static const char *EVENTS[] = {"tool_success", "tool_error", "prompt_success", "resource_success",
                               "rate_limit_exceeded", "pii_detected", "harmful_content", "violation", "plugin_error"};
#define N_EVENTS 9

static void test_every_event_with_every_auth_type(void) {
    rx_server *rx = rx_start(0);
    char config[2048];
    const char *all = "[violation, rate_limit_exceeded, pii_detected, harmful_content, tool_success, tool_error, "
                      "prompt_success, resource_success, plugin_error]";
    snprintf(config, sizeof config,
             "webhooks:\n"
             "  - {url: 'http://127.0.0.1:%d/none', events: %s}\n"
             "  - {url: 'http://127.0.0.1:%d/bearer', events: %s, authentication: {type: bearer, token: tok}}\n"
             "  - {url: 'http://127.0.0.1:%d/key', events: %s, authentication: {type: api_key, api_key: k1, "
             "api_key_header: X-Key}}\n"
             "  - {url: 'http://127.0.0.1:%d/hmac', events: %s, authentication: {type: hmac, hmac_secret: s3, "
             "hmac_header: X-Hub-Signature-256}}\n",
             rx_port(rx), all, rx_port(rx), all, rx_port(rx), all, rx_port(rx), all);
    WebhookPlugin *p = plugin_for(config);
    for (size_t i = 0; i < sizeof HOOKS / sizeof HOOKS[0]; i++) {
        char context[512], *result = NULL, *error = NULL;
        snprintf(context, sizeof context,
                 "{\"global_context\":{\"request_id\":\"req-%zu\",\"user\":\"a\\\"b\"},\"violation\":%s}", i,
                 HOOKS[i][2] ? HOOKS[i][2] : "null");
        int rc = webhook_plugin_invoke(p, HOOKS[i][0], HOOKS[i][1], context, &result, &error);
        CHECK(status_of(rc, error, NULL) == WEBHOOK_OK, "invoke %s", HOOKS[i][0]);
        char expect[96];
        snprintf(expect, sizeof expect, "\"webhook_event\":\"%s\"", EVENTS[i]);
        CHECK(result && strstr(result, expect), "result %s lacks %s", result ? result : "(null)", expect);
        webhook_string_free(result);
    }
    char *error = NULL;
    int rc = webhook_plugin_notify(p, "plugin_error", "{}", NULL, "{\"error\":\"host failure\"}", &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK, "notify");
    CHECK(status_of(webhook_plugin_flush(p, 10000, &error), error, NULL) == WEBHOOK_OK, "flush");
    size_t n = rx_wait(rx, 4 * N_EVENTS, 1000);
    CHECK(n == 4 * N_EVENTS, "received %zu", n);
    int per_event[N_EVENTS] = {0}, hmac_ok = 0, bearer_ok = 0, key_ok = 0;
    for (size_t i = 0; i < n; i++) {
        const rx_request *r = rx_get(rx, i);
        char value[256];
        if (rx_header(r, "X-Webhook-Event", value, sizeof value)) {
            for (int e = 0; e < N_EVENTS; e++) per_event[e] += strcmp(value, EVENTS[e]) == 0;
        }
        if (strcmp(r->path, "/bearer") == 0) bearer_ok += rx_header(r, "Authorization", value, sizeof value) &&
                                                          strcmp(value, "Bearer tok") == 0;
        if (strcmp(r->path, "/key") == 0) key_ok += rx_header(r, "X-Key", value, sizeof value) && strcmp(value, "k1") == 0;
        if (strcmp(r->path, "/hmac") == 0 && rx_header(r, "X-Hub-Signature-256", value, sizeof value)) {
            unsigned char mac[32];
            unsigned int mac_len = 0;
            HMAC(EVP_sha256(), "s3", 2, (const unsigned char *)r->body, r->body_len, mac, &mac_len);
            char hex[80] = "sha256=";
            for (unsigned int b = 0; b < mac_len; b++) sprintf(hex + 7 + 2 * b, "%02x", mac[b]);
            hmac_ok += strcmp(hex, value) == 0;
        }
        CHECK(strstr(r->body, "\"user\": \"a\\\"b\"") != NULL || strstr(r->body, "\"user\": \"\"") != NULL,
              "body %s", r->body);
    }
    for (int e = 0; e < N_EVENTS; e++) CHECK(per_event[e] == 4, "%s delivered %d times", EVENTS[e], per_event[e]);
    CHECK(bearer_ok == N_EVENTS && key_ok == N_EVENTS && hmac_ok == N_EVENTS, "auth bearer %d key %d hmac %d",
          bearer_ok, key_ok, hmac_ok);
    CHECK(stat_of(p, "delivered") == 4 * N_EVENTS, "stats delivered");
    webhook_plugin_free(p);
    rx_stop(rx);
}

static void test_every_status_code(void) {
    WebhookPlugin *p = NULL;
    char *error = NULL;
    int rc = webhook_plugin_new("webhooks: [{url: 'https://a/', retry_attempts: 11}]", NULL, &p, &error);
    CHECK(status_of(rc, error, "webhooks[0].retry_attempts") == WEBHOOK_CONFIG_ERROR && p == NULL, "config error");
    rc = webhook_plugin_new("webhooks: [{url: 'https://a/', authentication: {type: bearer}}]", NULL, &p, &error);
    CHECK(status_of(rc, error, "authentication.token") == WEBHOOK_CONFIG_ERROR, "missing credential");
    rc = webhook_plugin_new(NULL, NULL, &p, &error);
    CHECK(status_of(rc, error, "config") == WEBHOOK_INVALID_ARGUMENT, "NULL config");
    rc = webhook_plugin_new("{}", NULL, NULL, &error);
    CHECK(status_of(rc, error, "out") == WEBHOOK_INVALID_ARGUMENT, "NULL out");

    rx_server *slow = rx_start(3000);
    char config[256];
    snprintf(config, sizeof config, "webhooks: [{url: 'http://127.0.0.1:%d/', events: [tool_success]}]", rx_port(slow));
    p = plugin_for(config);
    rc = webhook_plugin_invoke(p, "tool_post_invoke", "{\"name\": ", NULL, NULL, &error);
    CHECK(status_of(rc, error, "payload_json") == WEBHOOK_PARSE_ERROR, "bad payload JSON");
    rc = webhook_plugin_invoke(p, "tool_post_invoke", "{}", "[1,2]", NULL, &error);
    CHECK(status_of(rc, error, "context") == WEBHOOK_PARSE_ERROR, "context not an object");
    rc = webhook_plugin_notify(p, "violation", NULL, NULL, "[1]", &error);
    CHECK(status_of(rc, error, "metadata") == WEBHOOK_PARSE_ERROR, "metadata not an object");
    /* Any non-null violation is one; a string becomes {"reason": ...}. */
    rc = webhook_plugin_notify(p, "violation", NULL, "\"not an object\"", NULL, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK, "a string violation");
    rc = webhook_plugin_invoke(p, "tool_mid_invoke", "{}", NULL, NULL, &error);
    CHECK(status_of(rc, error, "unknown hook") == WEBHOOK_INVALID_ARGUMENT, "unknown hook");
    rc = webhook_plugin_notify(p, "tool_exploded", NULL, NULL, NULL, &error);
    CHECK(status_of(rc, error, "unknown event") == WEBHOOK_INVALID_ARGUMENT, "unknown event");
    rc = webhook_plugin_invoke(p, "tool_post_invoke", NULL, NULL, NULL, &error);
    CHECK(status_of(rc, error, "payload_json") == WEBHOOK_INVALID_ARGUMENT, "NULL payload");
    rc = webhook_plugin_invoke(NULL, "tool_post_invoke", "{}", NULL, NULL, &error);
    CHECK(status_of(rc, error, "NULL") == WEBHOOK_INVALID_ARGUMENT, "NULL handle");
    const char bad_utf8[] = {'t', (char)0xC3, (char)0x28, 0};
    rc = webhook_plugin_invoke(p, bad_utf8, "{}", NULL, NULL, &error);
    CHECK(status_of(rc, error, "UTF-8") == WEBHOOK_INVALID_ARGUMENT, "bad UTF-8");
    rc = webhook_plugin_invoke(p, "tool_post_invoke", "{}", NULL, NULL, NULL); /* error may be NULL */
    CHECK(rc == WEBHOOK_OK, "invoke with NULL error: %d", rc);
    rc = webhook_plugin_flush(p, 100, &error);
    CHECK(status_of(rc, error, "pending") == WEBHOOK_TIMEOUT, "flush timeout");
    rc = webhook_plugin_close(p, 200, &error);
    CHECK(status_of(rc, error, "pending") == WEBHOOK_TIMEOUT, "close with pending");
    CHECK(stat_of(p, "dropped") == 1, "abandoned delivery counted as dropped");
    rc = webhook_plugin_invoke(p, "tool_post_invoke", "{}", NULL, NULL, &error);
    CHECK(status_of(rc, error, "closed") == WEBHOOK_CLOSED, "invoke after close");
    rc = webhook_plugin_notify(p, "violation", NULL, NULL, NULL, &error);
    CHECK(status_of(rc, error, "closed") == WEBHOOK_CLOSED, "notify after close");
    webhook_plugin_free(p);
    webhook_plugin_free(NULL);
    webhook_string_free(NULL);
    rx_stop(slow);
}

/* The event-only entry points: a hook no webhook takes is answered without reading its
 * documents (even malformed ones), and the event raised comes back as an index. */
static void test_invoke_event_and_wanted_hooks(void) {
    WebhookPlugin *p = plugin_for("webhooks: [{url: 'http://127.0.0.1:9/', events: [tool_error], enabled: true}]");
    char *error = NULL;
    bool wanted = true;
    int rc = webhook_plugin_wants_hook(p, "prompt_post_fetch", &wanted, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK && !wanted, "prompt_post_fetch unwanted");
    rc = webhook_plugin_wants_hook(p, "tool_post_invoke", &wanted, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK && wanted, "tool_post_invoke wanted");
    rc = webhook_plugin_wants_hook(p, "tool_mid_invoke", &wanted, &error);
    CHECK(status_of(rc, error, "unknown hook") == WEBHOOK_INVALID_ARGUMENT, "unknown hook");

    int32_t event = 7;
    rc = webhook_plugin_invoke_event(p, "prompt_post_fetch", "{not json", "[", &event, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK && event == -1, "unwanted hook: %d", event);
    rc = webhook_plugin_invoke_event(p, "prompt_post_fetch", NULL, NULL, &event, &error);
    CHECK(status_of(rc, error, "payload_json") == WEBHOOK_INVALID_ARGUMENT, "NULL payload still refused");
    rc = webhook_plugin_invoke_event(p, "tool_post_invoke", "{not json", NULL, &event, &error);
    CHECK(status_of(rc, error, "payload_json") == WEBHOOK_PARSE_ERROR, "wanted hook parses");
    rc = webhook_plugin_invoke_event(p, "tool_post_invoke",
                                     "{\"name\": \"t\", \"result\": {\"isError\": true}}", NULL, &event, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK && event >= 0 &&
              strcmp(webhook_event_name(event), "tool_error") == 0,
          "tool_error raised: %d", event);
    CHECK(webhook_event_count() == 11 && strcmp(webhook_event_name(0), "violation") == 0 &&
              webhook_event_name(11) == NULL && webhook_event_name(-1) == NULL,
          "event names");
    webhook_plugin_close(p, 0, NULL);
    webhook_plugin_free(p);
}

struct worker {
    WebhookPlugin *p;
    int calls, failures;
};

static void *invoke_many(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < w->calls; i++) {
        char *result = NULL;
        int rc = webhook_plugin_invoke(w->p, "tool_post_invoke", "{\"name\":\"t\",\"result\":{}}",
                                       "{\"request_id\":\"r\"}", &result, NULL);
        w->failures += rc != WEBHOOK_OK || result == NULL;
        webhook_string_free(result);
    }
    return NULL;
}

static void test_eight_threads_at_once(void) {
    rx_server *rx = rx_start(0);
    char config[256];
    snprintf(config, sizeof config, "webhooks: [{url: 'http://127.0.0.1:%d/', events: [tool_success]}]", rx_port(rx));
    WebhookPlugin *p = plugin_for(config);
    enum { THREADS = 8 };
    int calls = quick ? 50 : 500;
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (struct worker){p, calls, 0};
        pthread_create(&threads[t], NULL, invoke_many, &workers[t]);
    }
    int failures = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        failures += workers[t].failures;
    }
    char *error = NULL;
    CHECK(failures == 0, "%d failed invokes", failures);
    CHECK(status_of(webhook_plugin_flush(p, 30000, &error), error, NULL) == WEBHOOK_OK, "flush");
    CHECK(stat_of(p, "delivered") == THREADS * calls, "delivered %ld of %d", stat_of(p, "delivered"), THREADS * calls);
    CHECK(rx_count(rx) == (size_t)(THREADS * calls), "received %zu", rx_count(rx));
    webhook_plugin_free(p);
    rx_stop(rx);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_invoke_latency_with_a_dead_receiver(void) {
    char config[256];
    snprintf(config, sizeof config,
             "queue_capacity: 100000\nwebhooks: [{url: 'http://127.0.0.1:%d/', events: [tool_success], "
             "retry_attempts: 0, circuit_breaker: false}]",
             rx_dead_port());
    WebhookPlugin *p = plugin_for(config);
    int n = quick ? 200 : 20000;
    double *us = malloc(sizeof *us * n);
    for (int i = 0; i < n; i++) {
        double t = now_us();
        webhook_plugin_invoke(p, "tool_post_invoke", "{\"name\":\"search\",\"result\":{\"ok\":true}}",
                              "{\"global_context\":{\"request_id\":\"r\",\"user\":\"u\"}}", NULL, NULL);
        us[i] = now_us() - t;
    }
    qsort(us, n, sizeof *us, by_value);
    printf("invoke latency, dead receiver, %d calls: median %.2f us, p99 %.2f us\n", n, us[n / 2], us[n * 99 / 100]);
    free(us);
    char *error = NULL;
    int rc = webhook_plugin_flush(p, 30000, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK, "flush");
    CHECK(stat_of(p, "failed") == n, "failed %ld", stat_of(p, "failed"));
    webhook_plugin_free(p);
}

/* Silences through the three C entry points: add (an id out), list (a JSON array), expire. */
static void test_silences(void) {
    WebhookPlugin *p = plugin_for("webhooks: [{url: 'http://127.0.0.1:9/', events: [tool_success]}]");
    char *error = NULL, *id = NULL, *listed = NULL;
    int rc = webhook_plugin_silence_add(p, "{\"matchers\": [\"tool=search\"], \"duration\": \"1h\"}", &id, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK && id && strlen(id) == 36, "silence added: %s", id ? id : "(null)");
    rc = webhook_plugin_silences(p, &listed, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK && listed && strstr(listed, id) && strstr(listed, "\"active\""),
          "listed: %s", listed ? listed : "(null)");
    webhook_string_free(listed);
    rc = webhook_plugin_silence_add(p, "{\"matchers\": [\"tool=search\"]}", &listed, &error);
    CHECK(status_of(rc, error, "ends_at") == WEBHOOK_INVALID_ARGUMENT && listed == NULL, "no end");
    rc = webhook_plugin_silence_add(p, "{not json", &listed, &error);
    CHECK(status_of(rc, error, "silence_json") == WEBHOOK_PARSE_ERROR, "bad JSON");
    rc = webhook_plugin_silence_expire(p, id, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK, "expired");
    rc = webhook_plugin_silence_expire(p, id, &error);
    CHECK(status_of(rc, error, "no silence") == WEBHOOK_INVALID_ARGUMENT, "expired twice");
    webhook_string_free(id);
    webhook_plugin_close(p, 0, NULL);
    webhook_plugin_free(p);
}

static void test_metrics(void) {
    rx_server *rx = rx_start(0);
    char config[256];
    snprintf(config, sizeof config,
             "webhooks: [{url: 'http://127.0.0.1:%d/SECRET-PATH', id: ops, events: [violation]}]", rx_port(rx));
    WebhookPlugin *p = plugin_for(config);
    char *error = NULL;
    int rc = webhook_plugin_notify(p, "violation", NULL, "{\"reason\": \"r\"}", NULL, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK, "notify");
    rc = webhook_plugin_flush(p, 10000, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK, "flush");
    char *text = NULL;
    rc = webhook_plugin_metrics(p, &text, &error);
    CHECK(status_of(rc, error, NULL) == WEBHOOK_OK && text, "metrics");
    CHECK(text && strstr(text, "webhook_notification_deliveries_total{plugin=\"CTest\",webhook=\"ops\","
                               "event=\"violation\",outcome=\"delivered\"} 1"),
          "delivered sample in %s", text ? text : "(null)");
    CHECK(text && !strstr(text, "SECRET"), "no URL in metrics");
    webhook_string_free(text);
    rc = webhook_plugin_metrics(p, NULL, &error);
    CHECK(status_of(rc, error, "text") == WEBHOOK_INVALID_ARGUMENT, "NULL text");
    webhook_plugin_free(p);
    rx_stop(rx);
}

int main(void) {
    quick = getenv("WEBHOOK_TEST_QUICK") != NULL;
    test_versions();
    test_every_event_with_every_auth_type();
    test_every_status_code();
    test_invoke_event_and_wanted_hooks();
    test_silences();
    test_eight_threads_at_once();
    test_metrics();
    test_invoke_latency_with_a_dead_receiver();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
