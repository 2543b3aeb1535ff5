package harness

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxLoadErrors is how many errors a LoadResult keeps.
const maxLoadErrors = 5

// LoadResult counts what a Load run did.
type LoadResult struct {
	// Requests is how many times do was called.
	Requests  int
	Successes int
	Failures  int
	// Errors are the first few failures, in the order they were seen.
	Errors  []error
	Elapsed time.Duration
}

func (r LoadResult) String() string {
	return fmt.Sprintf("%d requests in %s: %d ok, %d failed; first errors: %v",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.Successes, r.Failures, r.Errors)
}

// Load calls do(i) for i = 0, 1, ... from concurrency goroutines until
// requests calls were made or ctx ends, whichever comes first, so a load
// test is bounded in count and in time. do should itself respect ctx (for
// example by building its request with it) so the last calls end promptly.
func Load(ctx context.Context, requests, concurrency int, do func(i int) error) LoadResult {
	var (
		next      atomic.Int64
		successes atomic.Int64
		failures  atomic.Int64
		errMu     sync.Mutex
		errs      []error
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range max(concurrency, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= requests {
					return
				}
				if err := do(i); err != nil {
					failures.Add(1)
					errMu.Lock()
					if len(errs) < maxLoadErrors {
						errs = append(errs, fmt.Errorf("request %d: %w", i, err))
					}
					errMu.Unlock()
					continue
				}
				successes.Add(1)
			}
		})
	}
	wg.Wait()
	s, f := int(successes.Load()), int(failures.Load())
	return LoadResult{Requests: s + f, Successes: s, Failures: f, Errors: errs, Elapsed: time.Since(start)}
}
