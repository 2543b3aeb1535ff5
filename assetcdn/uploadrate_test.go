package assetcdn

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
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
