package installer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/installer"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/validator"
)

// largeContent encodes a channel file of about size bytes with the given
// content version, valid for sensor 7.11.
func largeContent(tb testing.TB, version uint32, size int) []byte {
	tb.Helper()
	c := capabilities(tb)
	f := &validator.ChannelFile{Channel: 291, ContentVersion: version, TemplateType: 7, TemplateVersion: 1}
	for _, in := range c.Template(7).Inputs {
		f.Fields = append(f.Fields, in.Type)
	}
	for i := 0; ; i++ {
		f.Instances = append(f.Instances, validator.Instance{ID: uint32(i + 1), Action: validator.ActionAlert, Matchers: []validator.Matcher{
			{Field: 0, Kind: validator.MatchPrefix, Str: fmt.Sprintf(`\\.\pipe\agent_%06d_`, i)},
			{Field: 16, Kind: validator.MatchRange, Lo: uint64(i % 1000), Hi: uint64(i%1000 + 100)},
		}})
		if i%1000 == 999 {
			data, err := validator.Encode(f)
			require.NoError(tb, err)
			if len(data) >= size {
				return data
			}
		}
	}
}

// BenchmarkStageActivate1MiB measures StageActivate of 1 MiB of content, the
// daemon's path (claim the slot, write content and manifest durably with one
// directory sync, record TRIAL, history in state.db: the syncs
// docs/boot-record.md lists under "Power cuts") against the bare minimum any
// durable install needs, measured in the same iterations on the same file
// system: write the same bytes to a new file, fsync it, fsync the directory.
// It reports both and their ratio (x-bare), and the time of Check (the
// validation before it, which the daemon's pipeline runs once, ahead of
// preflight) on its own.
func BenchmarkStageActivate1MiB(b *testing.B) {
	root := testtmp.Dir(b)
	in := open(b, root)
	bare := filepath.Join(testtmp.Dir(b), "bare")
	require.NoError(b, os.Mkdir(bare, 0o700))
	var check, staged, minimum time.Duration
	version := uint32(5000)
	b.SetBytes(1 << 20)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		version++
		data := largeContent(b, version, 1<<20)
		b.StartTimer()

		tc := time.Now()
		c, err := in.Check(data)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		check += t0.Sub(tc)
		if _, _, err := in.StageActivate(c, installer.StageOptions{}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := writeSync(filepath.Join(bare, fmt.Sprint(i)), data); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		staged += t1.Sub(t0)
		minimum += t2.Sub(t1)

		b.StopTimer()
		if _, err := in.Boot(true); err != nil {
			b.Fatal(err)
		}
		if _, err := in.MarkGood(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(check.Microseconds())/n, "µs-check/op")
	b.ReportMetric(float64(staged.Microseconds())/n, "µs-stage+activate/op")
	b.ReportMetric(float64(minimum.Microseconds())/n, "µs-bare/op")
	b.ReportMetric(float64(staged)/float64(minimum), "x-bare")
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}
