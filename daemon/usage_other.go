//go:build !linux && !windows

package daemon

import "errors"

// proc: this platform's accounting is not read; the agent's health goes
// without CPU and memory, and so without a sample (health.sample).
type proc struct{}

func openProc(int) (*proc, error) { return nil, errors.ErrUnsupported }

func (p *proc) read() (usage, error) { return usage{}, errors.ErrUnsupported }

func (p *proc) close() {}
