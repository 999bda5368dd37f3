// A tiny Go gateway host: load a config file, report one tool call and one rate-limit
// violation, drain, print the stats.
//
//	go run ./example webhooks.yaml
package main

import (
	"fmt"
	"os"
	"time"

	webhook "webhook-notification/bindings/go"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: example CONFIG.yaml")
		os.Exit(2)
	}
	config, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	plugin, err := webhook.New(string(config), "ExampleGoGateway")
	if err != nil {
		fmt.Fprintln(os.Stderr, "config rejected:", err)
		os.Exit(1)
	}
	defer plugin.Close()

	context := []byte(`{"global_context": {"request_id": "req-1", "user": "alice"}}`)
	// In the request path: this only queues, it never waits on the network.
	result, err := plugin.Invoke("tool_post_invoke", []byte(`{"name": "search", "result": {"isError": true}}`), context)
	if err != nil {
		fmt.Fprintln(os.Stderr, "invoke:", err)
	}
	fmt.Printf("hook result: %s\n", result)
	if err := plugin.Notify("rate_limit_exceeded", context, []byte(`{"reason": "Rate limit exceeded", "code": "RATE_LIMIT"}`), nil); err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
	}

	if err := plugin.Flush(10 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "flush:", err)
	}
	stats, err := plugin.Stats()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stats:", err)
		os.Exit(1)
	}
	fmt.Printf("library %s: delivered %d, failed %d, dropped %d\n", webhook.Version(), stats.Delivered, stats.Failed, stats.Dropped)
}
