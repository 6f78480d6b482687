package await

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recorder is a TB that keeps what Fatalf said instead of stopping.
type recorder struct{ failed []string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func TestUntilReturnsOnceMet(t *testing.T) {
	var r recorder
	calls := 0
	Until(&r, time.Minute, time.Microsecond, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}, "never met")
	require.Empty(t, r.failed)
	require.Equal(t, 3, calls)
}

func TestUntilFailsWithTheLastReason(t *testing.T) {
	var r recorder
	calls := 0
	Until(&r, -time.Second, time.Microsecond, func() error {
		calls++
		return fmt.Errorf("attempt %d", calls)
	}, "the %s never came", "file")
	require.Equal(t, 1, calls, "a limit already passed still tries once")
	require.Equal(t, []string{"the file never came (last: attempt 1)"}, r.failed)
}
