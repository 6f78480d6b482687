package validator

import (
	"fmt"
	"strings"
)

// Severity says whether a problem rejects the file.
type Severity string

// Severities.
const (
	// SeverityError rejects the file.
	SeverityError Severity = "error"
	// SeverityWarning is reported but does not reject the file.
	SeverityWarning Severity = "warning"
)

// Problem is one thing wrong with a channel file.
type Problem struct {
	Code     Code     `json:"code"`
	Severity Severity `json:"severity"`
	// Instance is the 1-based index of the template instance concerned, or
	// 0 when the problem is not about one instance.
	Instance int `json:"instance,omitempty"`
	// Field is the 1-based input field concerned, or 0.
	Field int `json:"field,omitempty"`
	// Offset is the byte offset in the file where a structural problem was
	// found, or -1.
	Offset  int    `json:"offset"`
	Message string `json:"message"`
	// Detail is supporting evidence, such as the interpreter's stack after
	// a preflight crash; it may span lines.
	Detail string `json:"detail,omitempty"`
}

// String formats the problem as "CODE: message".
func (p Problem) String() string {
	return fmt.Sprintf("%s: %s", p.Code, p.Message)
}

// Line is the problem as the CLIs print it: "FILE: CODE: message", with
// "warning: " before the message of a warning.
func (p Problem) Line(file string) string {
	sev := ""
	if p.Severity == SeverityWarning {
		sev = "warning: "
	}
	return fmt.Sprintf("%s: %s: %s%s", file, p.Code, sev, p.Message)
}

// Problems is the result of a check: every problem found, in file order.
type Problems []Problem

// HasErrors reports whether any problem rejects the file.
func (ps Problems) HasErrors() bool {
	for _, p := range ps {
		if p.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Err returns nil when no problem rejects the file, and otherwise an error
// listing the rejecting problems.
func (ps Problems) Err() error {
	var errs []string
	for _, p := range ps {
		if p.Severity == SeverityError {
			errs = append(errs, p.String())
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &RejectedError{Problems: ps, summary: strings.Join(errs, "; ")}
}

// RejectedError is returned by Problems.Err when a file is rejected.
type RejectedError struct {
	Problems Problems
	summary  string
}

func (e *RejectedError) Error() string { return "validator: rejected: " + e.summary }

// FormatError is returned by Parse for a file that is not a well-formed
// channel file. It carries the same code, offset and location as the
// Problem that Validate reports for it.
type FormatError struct {
	Code     Code
	Offset   int
	Instance int // 1-based, 0 if none
	Field    int // 1-based, 0 if none
	Msg      string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("validator: %s at offset %d: %s", e.Code, e.Offset, e.Msg)
}

// Problem converts the error to the Problem Validate reports.
func (e *FormatError) Problem() Problem {
	return Problem{Code: e.Code, Severity: SeverityError, Instance: e.Instance, Field: e.Field, Offset: e.Offset, Message: e.Msg}
}
