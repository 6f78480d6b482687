package slo

import (
	"errors"
	"fmt"
)

// Errors of the package.
var (
	// ErrInvalid is returned by Validate for a check a rollout must not
	// carry; the message names the check and what to change.
	ErrInvalid = errors.New("slo: invalid check")
	// ErrNoData is returned by a query that answered without a number: an
	// empty vector, or NaN. It is no breach until it has lasted longer
	// than the check's grace.
	ErrNoData = errors.New("slo: the query returned no data")
	// ErrShape is returned by a query whose answer is not one number: more
	// than one series, a range vector, a string, a histogram. The message
	// says how to write the query instead.
	ErrShape = errors.New("slo: the query does not return one number")
)

// APIError is an error Prometheus answered with (status "error"): its
// errorType ("bad_data" for a query that does not parse, "execution",
// "timeout", "unavailable", ...) and message.
type APIError struct {
	HTTPStatus int
	Type       string
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("slo: Prometheus refused the query (HTTP %d, %s): %s", e.HTTPStatus, e.Type, e.Message)
}

// BadQuery reports whether Prometheus refused the query itself (it does
// not parse, or names what does not exist), rather than failing to run it.
func (e *APIError) BadQuery() bool { return e.Type == "bad_data" }
