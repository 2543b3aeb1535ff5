package logship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

const (
	// firstBackoff is the wait after the first failed upload; it doubles
	// up to max_backoff.
	firstBackoff = time.Second
	// uploadTimeout bounds one upload attempt.
	uploadTimeout = 2 * time.Minute
	// notRunningPoll is how often the uploader looks for the config to
	// start (see slot.store).
	notRunningPoll = 100 * time.Millisecond
	// storeAlarmAfter is how long a writer may wait for its store before
	// it says so: longer than a config takes to start, short enough that
	// an operator hears of it before any log is due.
	storeAlarmAfter = 5 * time.Second
	// storeAlarmEvery repeats the alarm while the store is still missing.
	storeAlarmEvery = time.Minute
)

// shipper rolls the spool by time and uploads rolled files, oldest
// first, one at a time, so the store receives a node's logs in order.
type shipper struct {
	sl     *slot
	ctx    context.Context // canceled when a closing flush runs out of time
	cancel context.CancelFunc
	stop   chan struct{} // closed by close: drain, then end
	done   chan struct{} // closed when both goroutines ended
	// deadline of the closing flush, in Unix nanoseconds; set before
	// stop is closed.
	deadline atomic.Int64
}

func startShipper(sl *slot) *shipper {
	ctx, cancel := context.WithCancel(context.Background())
	sh := &shipper{sl: sl, ctx: ctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	rollDone := make(chan struct{})
	go func() {
		defer close(rollDone)
		sh.rollLoop()
	}()
	go func() {
		defer close(sh.done)
		sh.uploadLoop()
		<-rollDone
	}()
	return sh
}

// close rolls the current file, uploads pending files for up to
// timeout, and ends the goroutines. Files not uploaded stay in the
// spool for the next process.
func (sh *shipper) close(timeout time.Duration) {
	sh.sl.spool.roll()
	sh.deadline.Store(time.Now().Add(timeout).UnixNano())
	timer := time.AfterFunc(timeout, sh.cancel)
	defer timer.Stop()
	close(sh.stop)
	<-sh.done
	sh.cancel()
	if files, bytes := sh.sl.spool.stats(); files > 0 {
		logger().Warn("log files left in the spool; the next start ships them",
			zap.String("spool", sh.sl.dir), zap.Int("files", files), zap.Int64("bytes", bytes))
	}
}

func (sh *shipper) stopping() bool {
	select {
	case <-sh.stop:
		return true
	default:
		return false
	}
}

// rollLoop rolls the current file once it is roll_interval old and
// reports what the write path could not log itself.
func (sh *shipper) rollLoop() {
	tick := time.Second
	if iv := sh.sl.current().settings.rollInterval; iv/4 < tick {
		tick = max(iv/4, 10*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var alarm storeAlarm
	var writes writeErrorLog
	for {
		select {
		case <-sh.stop:
			return
		case now := <-t.C:
			sh.sl.spool.rollIfOlder(sh.sl.current().settings.rollInterval, now)
			sh.reportSpoolProblems(&writes, now)
			alarm.check(sh.sl, now)
			sh.sl.spool.compressIdle()
		}
	}
}

// storeAlarm reports a writer whose config runs (or should) but that has
// no store to upload to: its entries pile up in the spool and nothing
// else would say so.
type storeAlarm struct {
	waitingSince, lastLog time.Time
}

func (a *storeAlarm) check(sl *slot, now time.Time) {
	missing := sl.waitingForStore()
	sl.spool.metrics.setStoreReady(!missing)
	if !missing {
		if !a.lastLog.IsZero() {
			logger().Info("s3 log writer has its store; shipping resumes", zap.String("spool", sl.dir),
				zap.String("store", sl.current().settings.store))
		}
		*a = storeAlarm{}
		return
	}
	if a.waitingSince.IsZero() {
		a.waitingSince = now
	}
	if now.Sub(a.waitingSince) < storeAlarmAfter || now.Sub(a.lastLog) < storeAlarmEvery {
		return
	}
	a.lastLog = now
	files, bytes := sl.spool.stats()
	logger().Error("s3 log writer has no store to ship to; entries stay in the spool (caddylb_logship_store_ready is 0). "+
		"Is the asset_store it names declared, and did the config start?",
		zap.String("spool", sl.dir), zap.String("store", sl.current().settings.store),
		zap.Duration("waiting", now.Sub(a.waitingSince).Round(time.Second)),
		zap.Int("pending_files", files), zap.Int64("spool_bytes", bytes))
}

// writeErrorLogEvery limits how often spool write errors are logged,
// as the session stores' errors are: a full disk fails every entry.
const writeErrorLogEvery = 10 * time.Second

// writeErrorLog rate-limits the log of spool write errors.
type writeErrorLog struct {
	last    time.Time
	dropped int64 // entries lost since the last line
}

// reportSpoolProblems logs write errors (at most every
// writeErrorLogEvery, with the entries lost since) and drops since the
// last tick. The write path cannot log: the entry being written may be
// its own.
func (sh *shipper) reportSpoolProblems(writes *writeErrorLog, now time.Time) {
	if n, err := sh.sl.spool.takeErr(); err != nil {
		writes.dropped += n
		if now.Sub(writes.last) >= writeErrorLogEvery {
			logger().Error("writing the log spool failed; entries are lost (counted in caddylb_logship_dropped_bytes_total{reason=\"write_error\"})",
				zap.String("spool", sh.sl.dir), zap.Int64("entries_lost", writes.dropped), zap.Error(err))
			writes.last, writes.dropped = now, 0
		}
	}
	if oldest, refused := sh.sl.spool.takeDrops(); oldest+refused > 0 {
		logger().Warn("log spool full: log data dropped (see caddylb_logship_dropped_bytes_total)",
			zap.String("spool", sh.sl.dir), zap.String("on_full", sh.sl.current().settings.onFull),
			zap.Int64("dropped_oldest_bytes", oldest), zap.Int64("refused_bytes", refused))
	}
}

// uploadLoop ships pending files until close, then drains until the
// close deadline. A failed file is retried, never skipped, with capped
// exponential backoff.
func (sh *shipper) uploadLoop() {
	sp := sh.sl.spool
	var backoff time.Duration
	failures := 0
	for sh.ctx.Err() == nil {
		f := sp.next()
		if f == nil {
			if sh.stopping() {
				return
			}
			select {
			case <-sp.rolled:
			case <-sh.stop:
			}
			continue
		}
		key, err := sh.ship(f)
		if err == nil {
			if failures > 0 {
				logger().Info("log upload succeeded after failures", zap.String("spool", sh.sl.dir),
					zap.String("key", key), zap.Int("failed_attempts", failures))
			}
			backoff, failures = 0, 0
			continue
		}
		sp.release(f)
		if errors.Is(err, errNotRunning) {
			if sh.stopping() {
				return // no config ever started: nothing to upload to
			}
			sh.sleep(notRunningPoll)
			continue
		}
		failures++
		sp.metrics.failures.Inc()
		backoff = nextBackoff(backoff, sh.sl.current().settings.maxBackoff)
		logger().Error("uploading log file failed; will retry", zap.String("spool", sh.sl.dir),
			zap.String("key", key), zap.Duration("retry_in", backoff), zap.Error(err))
		sh.sleep(backoff)
	}
}

// sleep waits d; while running, close ends the wait early (the drain
// retries at once); while draining, the wait stops at the deadline.
func (sh *shipper) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	stop := sh.stop
	if sh.stopping() {
		stop = nil
	}
	select {
	case <-t.C:
	case <-stop:
	case <-sh.ctx.Done():
	}
}

// nextBackoff doubles prev up to limit, with ±20% jitter so that nodes
// that lost the store together do not retry together.
func nextBackoff(prev, limit time.Duration) time.Duration {
	next := 2 * prev
	if prev == 0 {
		next = firstBackoff
	}
	next = min(next, limit)
	jitter := time.Duration(float64(next) * (rand.Float64()*0.4 - 0.2))
	return max(next+jitter, time.Millisecond)
}

// put uploads one file. A store whose config was cleaned up under it
// (at shutdown the order of module cleanups is not defined) may panic:
// that is a failed upload too, and the file stays in the spool.
func put(ctx context.Context, store objectstore.Store, key string, body io.Reader, size int64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: store panicked: %v", objectstore.ErrUnavailable, r)
		}
	}()
	_, err = store.Put(ctx, key, body, size, objectstore.PutOptions{ContentType: "application/gzip"})
	return err
}

// ship compresses f if needed, uploads it, and deletes it once the
// store acknowledged it. It returns the object key.
func (sh *shipper) ship(f *spoolFile) (string, error) {
	store, reg, err := sh.sl.store()
	if err != nil {
		if errors.Is(err, errNotRunning) {
			return "", err
		}
		return "", fmt.Errorf("log store: %w", err)
	}
	st := reg.settings
	key, err := reg.tmpl.render(keyValues{Prefix: st.prefix, Host: st.host, Name: st.name, UUID: f.uuid(), Time: f.stamp()})
	if err != nil {
		return "", fmt.Errorf("asset store %q: object key for spool file %s: %w", st.store, f.base, err)
	}
	sp := sh.sl.spool
	err = sp.compress(f)
	var file *os.File
	if err == nil {
		file, err = os.Open(sp.path(f.base + suffixGzip))
	}
	if errors.Is(err, fs.ErrNotExist) {
		// Deleted from the spool by hand: retrying cannot bring it back,
		// and it must not block the files behind it.
		sp.discard(f)
		logger().Error("a spool file vanished before its upload; its entries are lost (counted in caddylb_logship_dropped_bytes_total{reason=\"write_error\"})",
			zap.String("spool", sh.sl.dir), zap.String("file", f.base))
		return key, nil
	}
	if err != nil {
		return key, err
	}
	defer file.Close()
	ctx, cancel := context.WithTimeout(sh.ctx, uploadTimeout)
	defer cancel()
	if err := put(ctx, store, key, file, f.size); err != nil {
		return key, fmt.Errorf("asset store %q: uploading %s: %w", st.store, key, err)
	}
	sp.metrics.shippedBytes.Add(float64(f.size))
	sp.metrics.shippedFiles.Inc()
	sp.metrics.lastUpload().SetToCurrentTime()
	if err := sp.done(f); err != nil {
		logger().Error("deleting an uploaded spool file", zap.String("key", key), zap.Error(err))
	}
	return key, nil
}
