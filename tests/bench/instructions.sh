#!/usr/bin/env bash
# An event's instructions, counted: a C host calls `webhook_plugin_invoke_event` EVENTS times
# (a 33-byte tool payload) into a batching ndjson webhook posting to RECEIVER, under
# callgrind. Prints one JSON row: instructions per event on the hook's thread (the call) and
# on the delivery thread (routing: variables, rendering, packing). The counts are the same
# for the same binary whatever else the machine runs, which timings on a shared 2-core VM are
# not. valgrind runs one thread at a time, so the hook's inbox grows further than it ever does
# live (the delivery thread empties it every millisecond): that growth is left out of the
# hook's count.
# Usage: bash tests/bench/instructions.sh OUT_DIR RECEIVER_URL LIBRARY_DIR [EVENTS]
set -euo pipefail
OUT=$1 RECEIVER=$2 LIBDIR=$(cd "$3" && pwd) EVENTS=${4:-20000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
mkdir -p "$OUT/instructions" && cd "$OUT/instructions"
cat > host.c <<C
#include <stdio.h>
#include <stdlib.h>
#include "webhook_notification.h"

int main(int argc, char **argv) {
    int events = atoi(argv[1]);
    WebhookPlugin *plugin;
    char *error = NULL;
    const char *config = "{\"queue_capacity\": 200000, \"webhooks\": [{\"url\": \"$RECEIVER\", "
        "\"events\": [\"tool_success\"], \"batch\": {\"max_events\": 500, \"max_wait\": \"100ms\"}}]}";
    if (webhook_plugin_new(config, "bench", &plugin, &error) != WEBHOOK_OK) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    int32_t event;
    for (int i = 0; i < events; i++) {
        if (webhook_plugin_invoke_event(plugin, "tool_post_invoke", "{\"name\": \"search\", \"result\": {}}",
                                        NULL, &event, &error) != WEBHOOK_OK) {
            fprintf(stderr, "%s\n", error);
            return 1;
        }
    }
    webhook_plugin_free(plugin);
    return 0;
}
C
gcc -O2 -I"$ROOT/include" host.c -L"$LIBDIR" -lwebhook_notification -o host
rm -f callgrind.*
LD_LIBRARY_PATH=$LIBDIR valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$PWD/callgrind.%p" ./host "$EVENTS" 2>/dev/null
# Inclusive counts (the profile of the thread that ran it) of the call on the hook's thread,
# less the inbox's growth there, and of routing on the delivery thread.
count() {
    for profile in callgrind.*-*; do
        callgrind_annotate --inclusive=yes "$profile" 2>/dev/null \
            | awk -v f="$1" -v less="${2:-^$}" '$0 ~ f {gsub(",", "", $1); n = $1} less != "^$" && $0 ~ less {gsub(",", "", $1); m = $1} END {print n - m}'
    done | sort -n | tail -1
}
hook=$(count ':webhook_plugin_invoke_event ' 'RawVec<T,A>::grow_one ')
routing=$(count 'intake::route_caught ')
python3 -c "import json, sys; e, h, r = map(int, sys.argv[1:]); print(json.dumps({'bench': 'instructions', 'events': e, 'hook_per_event': round(h / e), 'routing_per_event': round(r / e)}))" \
    "$EVENTS" "$hook" "$routing"
