package assetcdn

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// pipeBody is a request body the test writes into; a deadline in the past
// fails the read that waits, as a connection's read deadline does.
type pipeBody struct {
	*io.PipeReader
	w *io.PipeWriter
}

func newPipeBody() *pipeBody {
	r, w := io.Pipe()
	return &pipeBody{PipeReader: r, w: w}
}

func (p *pipeBody) setDeadline(time.Time) error {
	p.w.CloseWithError(os.ErrDeadlineExceeded)
	return nil
}

// tooSlow reports whether the guard cut the body off.
func (g *rateGuard) tooSlow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cut
}

// readAll reads g until an error and reports it and when it came.
func readAll(g *rateGuard) (error, time.Time) {
	buf := make([]byte, 512)
	for {
		if _, err := g.Read(buf); err != nil {
			return err, time.Now()
		}
	}
}

func TestRateGuardCutsOffASilentClientAfterTheGrace(t *testing.T) {
	body := newPipeBody()
	start := time.Now()
	g := newRateGuard(body, 1000, 300*time.Millisecond, body.setDeadline)
	defer g.stop()
	err, at := readAll(g)
	if !errors.Is(err, errUploadTooSlow) || !g.tooSlow() {
		t.Fatalf("read ended with %v, want errUploadTooSlow", err)
	}
	if d := at.Sub(start); d < 300*time.Millisecond {
		t.Fatalf("cut off after %v, before the grace of 300ms", d)
	}
}

// TestRateGuardFastStartThenTrickle: 128 KiB at once, then a byte at a
// time, is cut off soon after: the fast start saves at most one grace.
func TestRateGuardFastStartThenTrickle(t *testing.T) {
	body := newPipeBody()
	g := newRateGuard(body, 1000, 300*time.Millisecond, body.setDeadline)
	defer g.stop()
	go func() {
		if _, err := body.w.Write(make([]byte, 128<<10)); err != nil {
			return
		}
		for range 200 { // at most 20 s
			if _, err := body.w.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		body.w.Close()
	}()
	start := time.Now()
	err, at := readAll(g)
	if !errors.Is(err, errUploadTooSlow) {
		t.Fatalf("read ended with %v after %v, want errUploadTooSlow", err, at.Sub(start))
	}
}

// TestRateGuardKeepsAClientAtTheRate: a client sending faster than the
// minimum, in small bursts, is never cut off.
func TestRateGuardKeepsAClientAtTheRate(t *testing.T) {
	body := newPipeBody()
	g := newRateGuard(body, 1000, 300*time.Millisecond, body.setDeadline)
	defer g.stop()
	go func() {
		for range 40 { // 2 s at 2000 bytes/s
			if _, err := body.w.Write(make([]byte, 100)); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		body.w.Close()
	}()
	if err, _ := readAll(g); err != io.EOF || g.tooSlow() {
		t.Fatalf("a client at twice the rate ended with %v", err)
	}
}

// TestRateGuardDoesNotCountTimeNotSpentReading: while the handler does
// not read (the store is slow to take a part), the client is not to
// blame.
func TestRateGuardDoesNotCountTimeNotSpentReading(t *testing.T) {
	body := newPipeBody()
	g := newRateGuard(body, 1000, 200*time.Millisecond, body.setDeadline)
	defer g.stop()
	go func() {
		_, _ = body.w.Write(make([]byte, 10))
		body.w.Close()
	}()
	time.Sleep(time.Second) // five grace periods without a Read
	buf := make([]byte, 10)
	if _, err := io.ReadFull(g, buf); err != nil || g.tooSlow() {
		t.Fatalf("read after a pause of the handler's own: %v", err)
	}
}

// TestRateGuardNeverCutsABodyThatArrived: once the body ended, the
// upload is done with the client, and while no read waits the client is
// not to blame: a check then never cuts, whatever the debt. The guard once
// cut an upload after it arrived (its last read crossed the allowance
// between two checks), cancelling the backend's request.
func TestRateGuardNeverCutsABodyThatArrived(t *testing.T) {
	body := newPipeBody()
	cuts := 0
	g := newRateGuard(body, 1000, time.Hour, func(time.Time) error { cuts++; return nil })
	g.timer.Stop() // the test calls check itself
	go func() {
		_, _ = body.w.Write(make([]byte, 10))
		body.w.Close()
	}()
	buf := make([]byte, 512)
	for {
		if _, err := g.Read(buf); err != nil {
			break
		}
	}
	g.mu.Lock()
	g.debt = 10 * g.allowance() // far behind, as a slow last read leaves it
	g.mu.Unlock()
	g.check()
	if cuts != 0 || g.tooSlow() {
		t.Fatal("cut off after the body ended")
	}

	// The same debt while the handler is busy and no read waits.
	g2 := newRateGuard(newPipeBody(), 1000, time.Hour, func(time.Time) error { cuts++; return nil })
	defer g2.stop()
	g2.mu.Lock()
	g2.debt = 10 * g2.allowance()
	g2.mu.Unlock()
	g2.check()
	if cuts != 0 || g2.tooSlow() {
		t.Fatal("cut off while no read was waiting for the client")
	}
}

// TestRateGuardRaisedWhileHoldingMemory: a client just above min_rate is
// cut off while the store holds a part buffer for it (the rate then is
// part_size per part_hold_time), and only then.
func TestRateGuardRaisedWhileHoldingMemory(t *testing.T) {
	body := newPipeBody()
	g := newRateGuard(body, 1000, 300*time.Millisecond, body.setDeadline)
	defer g.stop()
	ctx := objectstore.WithRateRaiser(context.Background(), g)
	stop := make(chan struct{})
	go func() {
		for { // 4000 bytes/s: four times min_rate
			select {
			case <-stop:
				body.w.Close()
				return
			case <-time.After(25 * time.Millisecond):
			}
			if _, err := body.w.Write(make([]byte, 100)); err != nil {
				return
			}
		}
	}()
	read := func(d time.Duration) error {
		buf := make([]byte, 512)
		for end := time.Now().Add(d); time.Now().Before(end); {
			if _, err := g.Read(buf); err != nil {
				return err
			}
		}
		return nil
	}
	if err := read(time.Second); err != nil {
		t.Fatalf("at four times min_rate: %v", err)
	}
	restore := objectstore.RaiseMinRate(ctx, 100_000) // holding memory: 100 kB/s, as the S3 store does
	err := read(2 * time.Second)
	restore()
	close(stop)
	if !errors.Is(err, errUploadTooSlow) {
		t.Fatalf("at 4 kB/s while holding a buffer that wants 100 kB/s: %v, want errUploadTooSlow", err)
	}
	if objectstore.RaiseMinRate(context.Background(), 1e9) == nil {
		t.Fatal("RaiseMinRate without a guard returned nil")
	}
}

// TestRateGuardForgivesWhatFellBehindTheRaisedRate: after the store gave
// back the part buffer, the debt run up against the raised rate does not
// cut the next file of the request at the lower rate.
func TestRateGuardForgivesWhatFellBehindTheRaisedRate(t *testing.T) {
	cuts := 0
	g := newRateGuard(newPipeBody(), 1000, time.Second, func(time.Time) error { cuts++; return nil })
	defer g.stop()
	restore := g.raise(100_000)
	g.mu.Lock()
	g.debt = g.allowance() / 2 // behind, within the raised allowance
	g.mu.Unlock()
	restore()
	g.mu.Lock()
	g.reading, g.since = true, time.Now() // a read waits for the next file
	g.mu.Unlock()
	g.check()
	if cuts != 0 || g.tooSlow() {
		t.Fatal("cut off at the lower rate for what fell behind the raised one")
	}
}

// TestRateGuardOverHTTP2OnlyGuardsMemory: an HTTP/2 stream can be stalled
// by a sibling on its connection, so only the memory floor applies, with
// a grace longer than an upload's wait for a part buffer.
func TestRateGuardOverHTTP2OnlyGuardsMemory(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "/upload", newPipeBody())
	r.ProtoMajor = 2
	g, r := guardRate(httptest.NewRecorder(), r, 1000, time.Second)
	defer g.stop()
	if g.minRate != 0 || g.grace < multiplexedGrace {
		t.Fatalf("HTTP/2: rate %v, grace %v", g.minRate, g.grace)
	}
	restore := objectstore.RaiseMinRate(r.Context(), 28_000)
	defer restore()
	if g.minRate != 28_000 {
		t.Fatalf("the memory floor does not apply over HTTP/2: %v", g.minRate)
	}
}
