package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/sensor"
	"github.com/ringfence/ringfence/validator"
)

// maxMatrix bounds the manifests one publish checks against.
const maxMatrix = compat.MaxSensors

// manifestList is a flag that may be given several times.
type manifestList []string

func (l *manifestList) String() string { return strings.Join(*l, ",") }

func (l *manifestList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("an empty path")
	}
	*l = append(*l, v)
	return nil
}

// matrixPaths is the capability manifests a publish checks content
// against: every --capabilities, then every *.json in the --matrix
// directory, in name order; none means the built-in sensor's ("").
func matrixPaths(files []string, dir string) ([]string, error) {
	paths := slices.Clone(files)
	if dir != "" {
		found, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			if _, err := os.Stat(dir); err != nil {
				return nil, fmt.Errorf("--matrix: %w", err)
			}
			return nil, fmt.Errorf("--matrix %s holds no capability manifest (*.json)", dir)
		}
		slices.Sort(found)
		paths = append(paths, found...)
	}
	if len(paths) > maxMatrix {
		return nil, fmt.Errorf("%d capability manifests; the limit is %d", len(paths), maxMatrix)
	}
	if len(paths) == 0 {
		paths = []string{""}
	}
	return paths, nil
}

// matrixCheck is the product's check of one channel file against one
// sensor version.
type matrixCheck struct {
	sensor  string
	path    string // the manifest ("": built in)
	verdict validator.Verdict
}

// vetMatrix runs the hosts' check (validator.Vet: validation, then the
// preflight of self's 'sensor preflight' with the same manifest unless
// opts.Preflight is nil) against each manifest. Two manifests that claim
// one sensor version are an error: the matrix could not say which is
// right.
func vetMatrix(ctx context.Context, data []byte, paths []string, self string, opts validator.VetOptions) ([]matrixCheck, error) {
	var out []matrixCheck
	for _, path := range paths {
		caps, err := sensor.LoadCapabilities(path)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(out, func(c matrixCheck) bool { return c.sensor == caps.Sensor }); i >= 0 {
			return nil, fmt.Errorf("%s and %s both claim sensor %s; keep one manifest per sensor version", out[i].path, path, caps.Sensor)
		}
		o := opts
		if opts.Preflight != nil {
			o.Preflight = &validator.PreflightOptions{Command: sensor.PreflightCommand(self, path)}
		}
		v, err := validator.Vet(ctx, data, caps, o)
		if err != nil {
			return nil, fmt.Errorf("sensor %s: %w", caps.Sensor, err)
		}
		out = append(out, matrixCheck{sensor: caps.Sensor, path: path, verdict: v})
	}
	return out, nil
}

// constraint is what the checks allow: the versions that accepted the
// file, each refusing one with its first rejecting code; any sensor when
// every version accepted it.
func constraint(checks []matrixCheck) compat.Constraint {
	var c compat.Constraint
	for _, m := range checks {
		if m.verdict.Accepted() {
			c.Sensors = append(c.Sensors, m.sensor)
			continue
		}
		if c.Excluded == nil {
			c.Excluded = map[string]string{}
		}
		c.Excluded[m.sensor] = firstError(m.verdict)
	}
	if len(c.Excluded) == 0 {
		return compat.Constraint{}
	}
	return c
}

// firstError is the code of the verdict's first rejecting problem.
func firstError(v validator.Verdict) string {
	for _, p := range v.Problems {
		if p.Severity == validator.SeverityError {
			return string(p.Code)
		}
	}
	return v.RefusedBy.String()
}

// printMatrix says per sensor version what the check found, the refusals'
// problems on stderr.
func printMatrix(stdout, stderr io.Writer, file string, checks []matrixCheck) {
	for _, m := range checks {
		v := m.verdict
		switch {
		case v.Accepted() && v.Preflighted:
			fmt.Fprintf(stdout, "sensor %s: ok (validated, preflight passed)\n", m.sensor)
		case v.Accepted():
			fmt.Fprintf(stdout, "sensor %s: ok (validated; preflight skipped)\n", m.sensor)
		default:
			fmt.Fprintf(stdout, "sensor %s: refused by %s (%s)\n", m.sensor, v.RefusedBy, firstError(v))
			v.Print(stderr, fmt.Sprintf("%s [sensor %s]", file, m.sensor))
		}
	}
}
