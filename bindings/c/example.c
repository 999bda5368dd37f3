/* A minimal C gateway host: load a config file, report one tool call and one rate-limit
 * violation, wait for delivery, print the stats.
 *
 *   cc -std=c11 -Iinclude bindings/c/example.c -Ltarget/release -lwebhook_notification \
 *      -Wl,-rpath,"$PWD/target/release" -o example
 *   ./example webhooks.yaml
 */
#include <stdio.h>
#include <stdlib.h>

#include "webhook_notification.h"

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    size_t got = fread(text, 1, (size_t)size, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG.yaml\n", argv[0]);
        return 2;
    }
    if (webhook_abi_version() != WEBHOOK_ABI_VERSION) {
        fprintf(stderr, "libwebhook_notification ABI %u, header %d: rebuild against the installed header\n",
                webhook_abi_version(), WEBHOOK_ABI_VERSION);
        return 1;
    }
    char *config = read_file(argv[1]);
    if (!config) {
        perror(argv[1]);
        return 1;
    }
    WebhookPlugin *plugin = NULL;
    char *error = NULL;
    int rc = webhook_plugin_new(config, "ExampleGateway", &plugin, &error);
    free(config);
    if (rc != WEBHOOK_OK) {
        fprintf(stderr, "config rejected (status %d): %s\n", rc, error);
        webhook_string_free(error);
        return 1;
    }

    /* In a gateway, this runs in the request path: it only queues, it never waits. */
    const char *context = "{\"global_context\": {\"request_id\": \"req-1\", \"user\": \"alice\"}}";
    char *result = NULL;
    rc = webhook_plugin_invoke(plugin, "tool_post_invoke", "{\"name\": \"search\", \"result\": {\"isError\": true}}",
                               context, &result, &error);
    if (rc == WEBHOOK_OK) {
        printf("hook result: %s\n", result);
        webhook_string_free(result);
    } else {
        fprintf(stderr, "invoke failed (status %d): %s\n", rc, error);
        webhook_string_free(error);
    }
    rc = webhook_plugin_notify(plugin, "rate_limit_exceeded", context,
                               "{\"reason\": \"Rate limit exceeded\", \"code\": \"RATE_LIMIT\"}", NULL, &error);
    if (rc != WEBHOOK_OK) {
        fprintf(stderr, "notify failed (status %d): %s\n", rc, error);
        webhook_string_free(error);
    }

    /* At shutdown: give deliveries a bounded time, then report. */
    if (webhook_plugin_flush(plugin, 10000, &error) != WEBHOOK_OK) {
        fprintf(stderr, "flush: %s\n", error);
        webhook_string_free(error);
    }
    char *stats = NULL;
    if (webhook_plugin_stats(plugin, &stats, NULL) == WEBHOOK_OK) {
        printf("stats: %s\n", stats);
        webhook_string_free(stats);
    }
    webhook_plugin_free(plugin);
    return 0;
}
