// errors.go: the C status codes as Go values. Every failure of this package is an *Error
// carrying the library's status code and message; match it with errors.Is against the
// sentinels below, or read Code.

package webhook

import "fmt"

// Code is a status code of the C API (WEBHOOK_* in webhook_notification.h).
type Code int32

// The status codes; values are the C API's and never change.
const (
	CodeOK              Code = 0 // success
	CodeInvalidArgument Code = 1 // empty/NUL-containing argument, unknown hook or event name
	CodeConfig          Code = 2 // the config cannot be loaded; the message names the field
	CodeParse           Code = 3 // payload, context, violation or metadata JSON is invalid
	CodeTimeout         Code = 4 // a flush or shutdown deadline passed with deliveries pending
	CodeClosed          Code = 5 // the plugin was closed
	CodePanic           Code = 6 // a library bug, caught at the boundary
)

// String names the code as the C header does.
func (c Code) String() string {
	switch c {
	case CodeOK:
		return "OK"
	case CodeInvalidArgument:
		return "INVALID_ARGUMENT"
	case CodeConfig:
		return "CONFIG_ERROR"
	case CodeParse:
		return "PARSE_ERROR"
	case CodeTimeout:
		return "TIMEOUT"
	case CodeClosed:
		return "CLOSED"
	case CodePanic:
		return "PANIC"
	}
	return fmt.Sprintf("status %d", int32(c))
}

// Error is a failure reported by the library: its status code and message.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "webhook: " + e.Code.String()
	}
	return fmt.Sprintf("webhook: %s (%s)", e.Message, e.Code)
}

// Is makes errors.Is(err, ErrConfig) etc. match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is. ErrTimeout and ErrClosed are expected at shutdown; ErrConfig,
// ErrParse and ErrInvalidArgument are caller mistakes (retrying will not help); ErrPanic is
// a library bug worth reporting.
var (
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
	ErrConfig          = &Error{Code: CodeConfig}
	ErrParse           = &Error{Code: CodeParse}
	ErrTimeout         = &Error{Code: CodeTimeout}
	ErrClosed          = &Error{Code: CodeClosed}
	ErrPanic           = &Error{Code: CodePanic}
)
