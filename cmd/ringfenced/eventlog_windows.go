package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// eventLog is what the event-log handler writes to (eventlog.Log).
type eventLog interface {
	Info(eid uint32, msg string) error
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// eventLogHandler is a slog.Handler writing to the Windows event log:
// Error as errors, Warn as warnings, the rest as information.
type eventLogHandler struct {
	el    eventLog
	level slog.Leveler
	attrs []slog.Attr
	group string
}

func newEventLogHandler(el eventLog, level slog.Leveler) *eventLogHandler {
	return &eventLogHandler{el: el, level: level}
}

func (h *eventLogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *eventLogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range h.attrs { // already prefixed with their group
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", h.prefix(a.Key), a.Value)
		return true
	})
	const eid = 1
	switch {
	case r.Level >= slog.LevelError:
		return h.el.Error(eid, b.String())
	case r.Level >= slog.LevelWarn:
		return h.el.Warning(eid, b.String())
	default:
		return h.el.Info(eid, b.String())
	}
}

func (h *eventLogHandler) prefix(k string) string {
	if h.group == "" {
		return k
	}
	return h.group + "." + k
}

func (h *eventLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		c.attrs = append(c.attrs, slog.Attr{Key: h.prefix(a.Key), Value: a.Value})
	}
	return &c
}

func (h *eventLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}
