package validator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Preflight defaults.
const (
	DefaultPreflightTimeout = 10 * time.Second
	DefaultPreflightMemory  = 512 << 20
	// MaxPreflightOutput bounds what is kept of the command's stdout and of
	// its stderr.
	MaxPreflightOutput = 64 << 10
)

// ExitCrash is the exit code with which the reference preflight command
// (sensor.PreflightMain) reports an interpreter crash it caught.
const ExitCrash = 3

// ErrPreflightCommand is returned (wrapped) when the preflight command cannot
// be run at all; that says nothing about the file.
var ErrPreflightCommand = errors.New("validator: cannot run preflight command")

// PreflightOptions configure Preflight.
type PreflightOptions struct {
	// Command is the preflight command and its arguments; the channel
	// file's path is appended as the last argument. It exits 0 when the
	// interpreter survived the file and non-zero otherwise. A vendor plugs
	// in their own interpreter here.
	Command []string
	// Timeout bounds the whole run, child start included
	// (DefaultPreflightTimeout if 0).
	Timeout time.Duration
	// MaxMemory bounds the child's data segment in bytes
	// (DefaultPreflightMemory if 0). Where the platform cannot limit a
	// child's memory, only the timeout applies.
	MaxMemory uint64
	// Env, when non-nil, is the child's environment.
	Env []string
}

// Preflight runs the preflight command on the channel file at path in a
// child process, so that an interpreter crash cannot take the caller down,
// and reports a crash, a timeout, memory exhaustion or another failure as a
// Problem with the child's evidence in Detail. It returns no problems when
// the interpreter survived, and an error only when the command could not be
// run or ctx was cancelled.
func Preflight(ctx context.Context, path string, opts PreflightOptions) (Problems, error) {
	if len(opts.Command) == 0 {
		return nil, fmt.Errorf("%w: no command configured", ErrPreflightCommand)
	}
	timeout := orDefault(opts.Timeout, DefaultPreflightTimeout)
	mem := opts.MaxMemory
	if mem == 0 {
		mem = DefaultPreflightMemory
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append(append([]string(nil), opts.Command[1:]...), path)
	cmd := exec.CommandContext(runCtx, opts.Command[0], args...)
	cmd.Env = opts.Env
	cmd.WaitDelay = time.Second
	var stdout, stderr boundedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPreflightCommand, err)
	}
	peak, err := limitMemory(cmd.Process, mem)
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%w: limit memory: %v", ErrPreflightCommand, err)
	}
	werr := cmd.Wait()
	var peakBytes uint64
	if peak != nil {
		peakBytes = peak(cmd.ProcessState)
	}
	if werr == nil {
		return nil, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	detail := stderr.String()
	reason := firstLine(detail)
	problem := func(code Code, format string, a ...any) Problems {
		return Problems{{Code: code, Severity: SeverityError, Offset: -1, Message: fmt.Sprintf(format, a...), Detail: detail}}
	}
	if runCtx.Err() == context.DeadlineExceeded {
		return problem(CodePreflightTimeout, "preflight: the interpreter did not finish within %s and was killed", timeout), nil
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) {
		return nil, fmt.Errorf("%w: %v", ErrPreflightCommand, werr)
	}
	// A child that hits the memory limit usually says so; Go 1.26 sometimes
	// dies of SIGSEGV inside its collector instead, and then this reads as
	// a crash. Both reject the file.
	switch {
	case strings.Contains(detail, "out of memory") || strings.Contains(detail, "cannot allocate memory") || peakBytes >= mem/4*3:
		return problem(CodePreflightMemory, "preflight: the interpreter reached its %d MiB memory limit (peak %d MiB): %s", mem>>20, peakBytes>>20, reason), nil
	case ee.ExitCode() == ExitCrash || ee.ExitCode() < 0 || strings.Contains(detail, "\ngoroutine "):
		// Our harness's report, death by signal, or a Go runtime traceback.
		if reason == "" {
			reason = ee.String()
		}
		return problem(CodePreflightCrash, "preflight: %s", strings.TrimPrefix(reason, "preflight: ")), nil
	}
	return problem(CodePreflightFailed, "preflight: command failed (%s): %s", ee, strings.TrimPrefix(reason, "preflight: ")), nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// boundedBuffer keeps the first MaxPreflightOutput bytes written to it and
// drops the rest, so a chatty or hostile child cannot exhaust the caller.
type boundedBuffer struct {
	b       bytes.Buffer
	dropped int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	room := MaxPreflightOutput - w.b.Len()
	if room < len(p) {
		w.dropped += len(p) - max(room, 0)
		p = p[:max(room, 0)]
	}
	w.b.Write(p)
	return n, nil
}

func (w *boundedBuffer) String() string {
	if w.dropped > 0 {
		return fmt.Sprintf("%s\n[%d more bytes dropped]", w.b.String(), w.dropped)
	}
	return w.b.String()
}
