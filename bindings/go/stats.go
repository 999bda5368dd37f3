// stats.go: the typed form of the library's stats JSON.

package webhook

// Stats are the delivery counters of a Plugin. Counts are per delivery (one event to one
// webhook); each delivery ends as exactly one of Delivered, Failed or Dropped (refused by
// a full queue or abandoned at shutdown).
type Stats struct {
	Delivered   uint64         `json:"delivered"`
	Failed      uint64         `json:"failed"`
	Retries     uint64         `json:"retries"`
	Dropped     uint64         `json:"dropped"`
	Pending     uint64         `json:"pending"`
	DeadLetters uint64         `json:"dead_letters"`
	Evicted     uint64         `json:"dead_letters_evicted"`
	HostErrors  uint64         `json:"host_errors"`
	Webhooks    []WebhookStats `json:"webhooks"`
	Outbox      OutboxStats    `json:"outbox"`
}

// OutboxStats say where deliveries wait ("memory", "disk" or "redis") and, for a durable
// outbox, how many new deliveries were committed, how many changes wait for the next commit,
// whether the store is reachable, and how many records it held that could not be read.
type OutboxStats struct {
	Type        string  `json:"type"`
	Committed   uint64  `json:"committed"`
	Uncommitted uint64  `json:"uncommitted"`
	Connected   bool    `json:"connected"`
	Unreadable  uint64  `json:"unreadable"`
	LastError   *string `json:"last_error"`
}

// WebhookStats are one webhook's counters, in config order. ID names the webhook; URL is
// redacted to scheme://host[:port]/… since URL paths are often credentials. Circuit is
// "closed", "open" or "half_open".
type WebhookStats struct {
	ID          string `json:"id"`
	URL         string `json:"url"`
	Delivered   uint64 `json:"delivered"`
	Failed      uint64 `json:"failed"`
	Retries     uint64 `json:"retries"`
	Dropped     uint64 `json:"dropped"`
	Queued      uint64 `json:"queued"`
	Circuit     string `json:"circuit"`
	DeadLetters uint64 `json:"dead_letters"`
	// Filtered counts events of the webhook's events that match, exclude or min_severity
	// turned away; BelowThreshold digest events that aged out before their group fired (or were
	// still below its threshold at close);
	// Groups the digest groups open; DigestMessages the digest messages queued so far;
	// DigestShared is true while the fleet digests the groups (a Redis outbox, reachable).
	Filtered       uint64 `json:"filtered"`
	BelowThreshold uint64 `json:"below_threshold"`
	Groups         uint64 `json:"groups"`
	DigestMessages uint64 `json:"digest_messages"`
	DigestShared   bool   `json:"digest_shared"`
	// DigestEventsLost counts the events held by digest messages that were dropped or failed.
	DigestEventsLost uint64 `json:"digest_events_lost"`
	// Batches counts batch requests delivered (a batching webhook counts events elsewhere).
	Batches uint64 `json:"batches"`
	// Muted counts events a mute time interval held back; Silenced those a silence held back.
	Muted        uint64   `json:"muted"`
	Silenced     uint64   `json:"silenced"`
	LastStatus   *int     `json:"last_status"`
	LastError    *string  `json:"last_error"`
	LatencyP50Ms *float64 `json:"latency_p50_ms"`
	LatencyP99Ms *float64 `json:"latency_p99_ms"`
}
