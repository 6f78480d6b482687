package main

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

type fakeEventLog struct{ lines []string }

func (f *fakeEventLog) Info(_ uint32, m string) error { f.lines = append(f.lines, "I "+m); return nil }
func (f *fakeEventLog) Warning(_ uint32, m string) error {
	f.lines = append(f.lines, "W "+m)
	return nil
}
func (f *fakeEventLog) Error(_ uint32, m string) error { f.lines = append(f.lines, "E "+m); return nil }

func TestEventLogHandlerLevels(t *testing.T) {
	el := &fakeEventLog{}
	log := slog.New(newEventLogHandler(el, slog.LevelInfo)).With("host", "h-1")
	log.Debug("hidden")
	log.Info("started", "version", 7)
	log.Warn("slow")
	log.WithGroup("agent").Error("died", "code", 2)
	require.Equal(t, []string{
		"I started host=h-1 version=7",
		"W slow host=h-1",
		fmt.Sprintf("E died host=h-1 agent.code=%d", 2),
	}, el.lines)
}
