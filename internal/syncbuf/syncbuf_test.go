package syncbuf

import (
	"fmt"
	"sync"
	"testing"
)

// TestConcurrent: writes from one goroutine and reads from another (run
// with -race) keep every byte.
func TestConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 100 {
			fmt.Fprintf(&b, "%02d", i)
		}
	}()
	for b.Len() < 200 {
		_ = b.String()
	}
	wg.Wait()
	if b.Len() != 200 || b.String()[:4] != "0001" || b.String()[196:] != "9899" {
		t.Fatalf("got %d bytes: %.10q...", b.Len(), b.String())
	}
}
