// Package webhook sends HTTP webhook notifications for an AI gateway's hooks through the
// webhook-notification native library (cgo over include/webhook_notification.h).
//
// Lifecycle: New → Invoke/Notify from any number of goroutines (they only queue; they never
// wait on the network) → Flush/Shutdown when draining → Close, which releases the native
// handle. A Plugin that is garbage-collected without Close is closed by a finalizer, but
// call Close yourself: it may wait up to the config's shutdown_timeout.
//
// Linking: the library is found in ../../target/release (cargo build --release); the
// binary records that directory as its rpath. Elsewhere, set CGO_LDFLAGS=-L<dir> and
// LD_LIBRARY_PATH=<dir>.
package webhook

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -lwebhook_notification -Wl,-rpath,${SRCDIR}/../../target/release
#include <stdlib.h>
#include <string.h>
#include "webhook_notification.h"
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The ABI gate: a library built from another header would make every call unsound, and
// init has no error return, so refuse to start with a message saying how to fix it.
func init() {
	if got := uint32(C.webhook_abi_version()); got != C.WEBHOOK_ABI_VERSION {
		panic(fmt.Sprintf("webhook: libwebhook_notification has ABI %d but this package expects %d; "+
			"rebuild the library (cargo build --release) from the same checkout", got, C.WEBHOOK_ABI_VERSION))
	}
}

// Version is the native library's version.
func Version() string { return C.GoString(C.webhook_version()) }

// Plugin is one configured set of webhooks and its delivery queue. Safe for concurrent use.
type Plugin struct {
	mu     sync.RWMutex // held shared by calls, exclusively by Close (which frees the handle)
	handle *C.WebhookPlugin
	closed atomic.Bool
}

// New loads config (YAML or JSON of the plugin's config mapping). pluginName fills
// {{plugin_name}}; "" means "WebhookNotification". Config mistakes are *Error with
// CodeConfig and a message naming the field.
func New(config, pluginName string) (*Plugin, error) {
	return open(config, pluginName, false)
}

// Attach is like New, but the plugin attaches to the process-wide engine of this config and
// plugin name (started if none runs): every plugin attached with the same config shares its
// queues, counters and breakers. Close (or the finalizer) only detaches it, at once; the
// engine closes once idle with nothing attached, or drains at process exit.
func Attach(config, pluginName string) (*Plugin, error) {
	return open(config, pluginName, true)
}

// open makes a plugin with an engine of its own, or attached to the shared one.
func open(config, pluginName string, attach bool) (*Plugin, error) {
	cConfig, err := cString("config", []byte(config))
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cConfig))
	var cName *C.char
	if pluginName != "" {
		if cName, err = cString("pluginName", []byte(pluginName)); err != nil {
			return nil, err
		}
		defer C.free(unsafe.Pointer(cName))
	}
	p := &Plugin{}
	var cErr *C.char
	var rc C.int32_t
	if attach {
		rc = C.webhook_plugin_attach(cConfig, cName, &p.handle, &cErr)
	} else {
		rc = C.webhook_plugin_new(cConfig, cName, &p.handle, &cErr)
	}
	if err := check(rc, cErr); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(p, finalize)
	return p, nil
}

// Invoke handles one hook call (e.g. "tool_post_invoke") with its cpex payload JSON and
// context JSON (a PluginContext or bare global context; nil for none). It returns the cpex
// PluginResult JSON, whose metadata names the event raised. It never waits on the network.
func (p *Plugin) Invoke(hook string, payload, context []byte) ([]byte, error) {
	args, err := cStrings(arg{"hook", []byte(hook), false}, arg{"payload", payload, false}, arg{"context", context, true})
	if err != nil {
		return nil, err
	}
	defer freeAll(args)
	var result, cErr *C.char
	err = p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_invoke(h, args[0], args[1], args[2], &result, &cErr)
	}, &cErr)
	if err != nil {
		return nil, err
	}
	return takeBytes(result), nil
}

// Notify raises event (e.g. "rate_limit_exceeded") directly; violation replaces any in
// context and metadata must be a JSON object (both nil for none). It never waits.
func (p *Plugin) Notify(event string, context, violation, metadata []byte) error {
	args, err := cStrings(arg{"event", []byte(event), false}, arg{"context", context, true},
		arg{"violation", violation, true}, arg{"metadata", metadata, true})
	if err != nil {
		return err
	}
	defer freeAll(args)
	var cErr *C.char
	return p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_notify(h, args[0], args[1], args[2], args[3], &cErr)
	}, &cErr)
}

// Flush blocks until nothing is queued or in flight (nil) or timeout passes (ErrTimeout).
func (p *Plugin) Flush(timeout time.Duration) error {
	var cErr *C.char
	return p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_flush(h, millis(timeout), &cErr)
	}, &cErr)
}

// Shutdown stops accepting events (later calls return ErrClosed) and delivers what is
// pending for at most timeout; what is left is abandoned, counted as dropped, and
// ErrTimeout returned. Close must still be called to release the handle.
func (p *Plugin) Shutdown(timeout time.Duration) error {
	var cErr *C.char
	return p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_close(h, millis(timeout), &cErr)
	}, &cErr)
}

// Stats returns the delivery counters.
func (p *Plugin) Stats() (Stats, error) {
	var out, cErr *C.char
	var stats Stats
	if err := p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_stats(h, &out, &cErr)
	}, &cErr); err != nil {
		return stats, err
	}
	err := json.Unmarshal(takeBytes(out), &stats)
	return stats, err
}

// Metrics returns the plugin's metrics in the Prometheus text exposition format 0.0.4
// (webhooks labelled by id, never by URL), e.g. to serve on a /metrics endpoint.
func (p *Plugin) Metrics() (string, error) {
	var out, cErr *C.char
	if err := p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_metrics(h, &out, &cErr)
	}, &cErr); err != nil {
		return "", err
	}
	return string(takeBytes(out)), nil
}

// Silence adds a silence to the outbox's store and returns its id: events matching it are
// sent to no webhook while it is active. spec is JSON: {"matchers": ["tool=search",
// "tenant!=t1"], "duration": "2h"} (or "starts_at"/"ends_at" in RFC 3339; "created_by",
// "comment"). A mistake or a limit is an error matching ErrInvalidArgument.
func (p *Plugin) Silence(spec []byte) (string, error) {
	args, err := cStrings(arg{"silence", spec, false})
	if err != nil {
		return "", err
	}
	defer freeAll(args)
	var id, cErr *C.char
	if err := p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_silence_add(h, args[0], &id, &cErr)
	}, &cErr); err != nil {
		return "", err
	}
	return string(takeBytes(id)), nil
}

// Silences returns the silences not yet ended as a JSON array of {id, matchers, starts_at,
// ends_at, created_by, comment, state}.
func (p *Plugin) Silences() ([]byte, error) {
	var out, cErr *C.char
	if err := p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_silences(h, &out, &cErr)
	}, &cErr); err != nil {
		return nil, err
	}
	return takeBytes(out), nil
}

// ExpireSilence ends the silence id now.
func (p *Plugin) ExpireSilence(id string) error {
	args, err := cStrings(arg{"id", []byte(id), false})
	if err != nil {
		return err
	}
	defer freeAll(args)
	var cErr *C.char
	return p.call(func(h *C.WebhookPlugin) C.int32_t {
		return C.webhook_plugin_silence_expire(h, args[0], &cErr)
	}, &cErr)
}

// Close delivers what is pending for at most the config's shutdown_timeout, then releases
// the native handle. It returns an error matching ErrTimeout if deliveries had to be
// abandoned (they are counted as dropped), else nil. It is idempotent (later calls return
// nil); later calls on p return ErrClosed. Calls already running finish first; calls that
// start meanwhile return ErrClosed.
func (p *Plugin) Close() error {
	p.closed.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.handle == nil {
		return nil
	}
	runtime.SetFinalizer(p, nil)
	var cErr *C.char
	err := check(C.webhook_plugin_shutdown(p.handle, &cErr), cErr)
	C.webhook_plugin_free(p.handle)
	p.handle = nil
	return err
}

// finalize closes a Plugin the program dropped without Close. Close may wait up to
// shutdown_timeout, and Go runs every finalizer on one goroutine, so it runs on its own.
func finalize(p *Plugin) {
	go p.Close()
}

// call runs f on the live handle and turns its status into an error.
func (p *Plugin) call(f func(*C.WebhookPlugin) C.int32_t, cErr **C.char) error {
	if p.closed.Load() {
		return &Error{Code: CodeClosed, Message: "the plugin is closed"}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.handle == nil {
		return &Error{Code: CodeClosed, Message: "the plugin is closed"}
	}
	return check(f(p.handle), *cErr)
}

// check converts a status and the library's owned message (freed here) into an error.
func check(status C.int32_t, cErr *C.char) error {
	message := ""
	if cErr != nil {
		message = C.GoString(cErr)
		C.webhook_string_free(cErr)
	}
	if status == C.WEBHOOK_OK {
		return nil
	}
	return &Error{Code: Code(status), Message: message}
}

// arg is one string argument on its way to C; optional ones may be nil (passed as NULL).
type arg struct {
	name     string
	value    []byte
	optional bool
}

func cStrings(args ...arg) ([]*C.char, error) {
	out := make([]*C.char, len(args))
	for i, a := range args {
		if a.optional && a.value == nil {
			continue
		}
		s, err := cString(a.name, a.value)
		if err != nil {
			freeAll(out)
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// cString copies value into C memory; a NUL byte would silently truncate it, so refuse it.
func cString(name string, value []byte) (*C.char, error) {
	if bytes.IndexByte(value, 0) >= 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: name + " contains a NUL byte"}
	}
	return C.CString(string(value)), nil
}

func freeAll(strings []*C.char) {
	for _, s := range strings {
		C.free(unsafe.Pointer(s))
	}
}

// takeBytes copies a library-owned string into Go memory and frees it.
func takeBytes(s *C.char) []byte {
	if s == nil {
		return nil
	}
	defer C.webhook_string_free(s)
	return C.GoBytes(unsafe.Pointer(s), C.int(C.strlen(s)))
}

func millis(d time.Duration) C.uint32_t {
	ms := d.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	if ms > math.MaxUint32 {
		ms = math.MaxUint32
	}
	return C.uint32_t(ms)
}
