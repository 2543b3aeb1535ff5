package logship

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// Spool file names are "<stamp>-<uuid><suffix>": the stamp (creation
// time, UTC, millisecond precision, strictly increasing within a
// process) orders the files, and stamp and UUID give the object key, so
// a retried upload of the same file lands on the same key.
const (
	stampLayout  = "20060102T150405.000Z"
	suffixOpen   = ".log.open"   // being written
	suffixRolled = ".log"        // rolled, not yet compressed
	suffixGzip   = ".log.gz"     // compressed, ready to upload
	suffixTmp    = ".log.gz.tmp" // compression in progress
	lockName     = ".lock"
)

// errorRollEvery is how often a failing write may roll the current file.
const errorRollEvery = time.Second

// Reasons in caddylb_logship_dropped_bytes_total.
const (
	reasonDropOldest = "drop_oldest"
	reasonRefuseNew  = "refuse_new"
	reasonWriteError = "write_error"
)

// On-full policies.
const (
	onFullDropOldest = "drop_oldest"
	onFullRefuseNew  = "refuse_new"
)

// spoolFile is a rolled file waiting for its upload.
type spoolFile struct {
	base    string // "<stamp>-<uuid>"
	size    int64  // bytes on disk
	raw     int64  // bytes before compression: what the dropped counters count
	gzipped bool
	holds   int // held by the uploader or the compressor: never dropped
}

func (f *spoolFile) stamp() time.Time {
	t, _ := time.Parse(stampLayout, f.base[:len(stampLayout)])
	return t
}

func (f *spoolFile) uuid() string { return f.base[len(stampLayout)+1:] }

// spool is the directory of one writer: the file being written and the
// rolled files, oldest first. One spool per directory lives for the
// whole process (see registry.go); its methods are safe for concurrent
// use.
type spool struct {
	dir     string
	metrics spoolMetrics
	lock    io.Closer // flock on dir/.lock: one process per spool

	compressMu sync.Mutex // one compression at a time (uploader, background)

	mu        sync.Mutex
	rollSize  int64
	maxBytes  int64
	onFull    string
	cur       *os.File // nil until the first write after a roll
	curBase   string
	curSize   int64
	curOpened time.Time
	lastStamp time.Time
	pending   []*spoolFile
	total     int64         // bytes of pending files and cur
	rolled    chan struct{} // signalled (cap 1) when a file is rolled
	lastErr   error         // the last write-path error, for the uploader to log
	// entries lost to write errors since the last takeErr
	writeErrors   int64
	lastErrorRoll time.Time // when a write error last rolled the file
	// bytes dropped since the last takeDrops, for the uploader to log
	droppedOldest, refused int64
	// A file shipper's spool (see commit.go): the position its last
	// checkpoint recorded, and whether the current file holds bytes past
	// curSize that must be cut off before the next write.
	mark  spoolMark
	dirty bool
}

// openSpool creates or recovers the spool in dir. Files a previous
// process left behind (crash, or shutdown before they were uploaded)
// become pending, oldest first.
func openSpool(dir string, m spoolMetrics) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("log spool: %v", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("log spool %s: %w", dir, err)
	}
	s := &spool{dir: dir, metrics: m, lock: lock, rolled: make(chan struct{}, 1)}
	if s.mark, err = applyCheckpointMark(dir); err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	s.publishLocked()
	return s, nil
}

// recover turns what a previous process left into pending files.
func (s *spool) recover() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("log spool: %v", err)
	}
	gz := map[string]bool{}
	var rolled []string
	for _, e := range entries {
		name := e.Name()
		base, suffix, ok := splitSpoolName(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		switch suffix {
		case suffixTmp:
			_ = os.Remove(s.path(name))
		case suffixOpen:
			if err := os.Rename(s.path(name), s.path(base+suffixRolled)); err != nil {
				return fmt.Errorf("log spool: recovering %s: %v", name, err)
			}
			rolled = append(rolled, base)
		case suffixRolled:
			rolled = append(rolled, base)
		case suffixGzip:
			gz[base] = true
		}
	}
	for _, base := range rolled {
		if gz[base] { // compressed before the crash, rolled copy left over
			_ = os.Remove(s.path(base + suffixRolled))
			continue
		}
		s.addRecovered(base, suffixRolled)
	}
	for base := range gz {
		s.addRecovered(base, suffixGzip)
	}
	sort.Slice(s.pending, func(i, j int) bool { return s.pending[i].base < s.pending[j].base })
	// New files must sort after recovered ones even if the clock went
	// back (an NTP step, a restored VM): keys are ordered by stamp.
	if n := len(s.pending); n > 0 {
		s.lastStamp = s.pending[n-1].stamp()
	}
	return nil
}

func (s *spool) addRecovered(base, suffix string) {
	fi, err := os.Stat(s.path(base + suffix))
	if err != nil {
		return
	}
	if fi.Size() == 0 {
		_ = os.Remove(s.path(base + suffix))
		return
	}
	f := &spoolFile{base: base, size: fi.Size(), raw: fi.Size(), gzipped: suffix == suffixGzip}
	if f.gzipped {
		f.raw = gzipISize(s.path(base + suffix))
	}
	s.pending = append(s.pending, f)
	s.total += fi.Size()
}

// splitSpoolName splits "<stamp>-<uuid><suffix>", longest suffix first.
func splitSpoolName(name string) (base, suffix string, ok bool) {
	for _, suf := range []string{suffixTmp, suffixGzip, suffixOpen, suffixRolled} {
		if b, found := strings.CutSuffix(name, suf); found {
			if len(b) != len(stampLayout)+1+36 || b[len(stampLayout)] != '-' {
				return "", "", false
			}
			if _, err := time.Parse(stampLayout, b[:len(stampLayout)]); err != nil {
				return "", "", false
			}
			return b, suf, true
		}
	}
	return "", "", false
}

func (s *spool) path(name string) string { return filepath.Join(s.dir, name) }

// configure sets the roll size, the bound and the on-full policy.
func (s *spool) configure(rollSize, maxBytes int64, onFull string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollSize, s.maxBytes, s.onFull = rollSize, maxBytes, onFull
}

// Write appends one log entry to the current file: one write(2), no
// user-space buffer, so a killed process loses nothing it wrote. A full
// spool applies the on-full policy; an entry that is not kept (refused,
// or lost to a write error such as a full disk) is counted, never an
// error, so that zap does not print every one to stderr.
func (s *spool) Write(entry []byte) (int, error) {
	p := escapeLineSeparators(entry)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(len(p))
	if s.total+n > s.maxBytes && !s.makeRoomLocked(n) {
		s.metrics.refused.Add(float64(n))
		s.refused += n
		return len(p), nil
	}
	if s.cur == nil {
		if err := s.openLocked(time.Now()); err != nil {
			s.lastErr = err
			s.writeErrors++
			s.metrics.writeErrors.Add(float64(n))
			return len(p), nil // counted and reported, as above
		}
	}
	written, err := s.cur.Write(p)
	if err != nil {
		// A short write (disk full, I/O error) must not leave half an
		// entry for the next one to be appended to: cut it off. Then
		// roll, so that what the file holds gets uploaded (freeing the
		// disk) and a new file can take more (a file size limit), but at
		// most once per errorRollEvery: a full disk once opened a new
		// file per dropped entry, each named a millisecond later, until
		// the names ran far ahead of the clock.
		s.lastErr = fmt.Errorf("log spool: writing %s: %w", s.curBase+suffixOpen, err)
		s.writeErrors++
		s.metrics.writeErrors.Add(float64(len(p)))
		cut := written == 0 || s.cur.Truncate(s.curSize) == nil
		if !cut {
			s.curSize += int64(written) // could not cut it: count what is there
			s.total += int64(written)
		}
		if now := time.Now(); !cut || now.Sub(s.lastErrorRoll) >= errorRollEvery {
			s.lastErrorRoll = now
			s.rollLocked()
		}
		s.metrics.spoolBytes.Set(float64(s.total))
		// Not an error to the logger: zap would print every dropped entry
		// to stderr. The shipper reports it, rate-limited.
		return len(p), nil
	}
	s.curSize += int64(written)
	s.total += int64(written)
	if s.curSize >= s.rollSize {
		s.rollLocked()
	}
	s.metrics.spoolBytes.Set(float64(s.total))
	return len(entry), nil
}

// escapeLineSeparators writes U+0085 (NEL), U+2028 and U+2029 as \u0085,
// \u2028 and \u2029. zap's JSON encoder escapes the control characters
// below U+0020 but leaves these raw, which is valid JSON, yet readers
// that split lines the Unicode way (Python's str.splitlines, many log
// viewers) then see an entry as two lines. In a JSON entry they can only
// occur inside strings, where the escape means the same character. p is
// returned as it is when it holds none, the usual case.
func escapeLineSeparators(p []byte) []byte {
	for _, sep := range lineSeparators {
		if bytes.Contains(p, sep.raw) {
			p = bytes.ReplaceAll(p, sep.raw, sep.escaped)
		}
	}
	return p
}

var lineSeparators = [...]struct{ raw, escaped []byte }{
	{[]byte("\u0085"), []byte(`\u0085`)},
	{[]byte("\u2028"), []byte(`\u2028`)},
	{[]byte("\u2029"), []byte(`\u2029`)},
}

// makeRoomLocked applies drop_oldest: it deletes the oldest pending
// files the uploader does not hold, then the current file, until n more
// bytes fit. It reports whether they fit.
func (s *spool) makeRoomLocked(n int64) bool {
	if s.onFull != onFullDropOldest {
		return false
	}
	for s.total+n > s.maxBytes {
		victim := -1
		for i, f := range s.pending {
			if f.holds == 0 {
				victim = i
				break
			}
		}
		if victim < 0 && s.curSize > 0 {
			s.rollLocked()
			continue
		}
		if victim < 0 {
			return false
		}
		f := s.pending[victim]
		s.pending = append(s.pending[:victim], s.pending[victim+1:]...)
		_ = os.Remove(s.path(f.base + f.suffix()))
		s.total -= f.size
		s.metrics.droppedOldest.Add(float64(f.raw))
		s.droppedOldest += f.raw
	}
	s.publishLocked()
	return true
}

func (f *spoolFile) suffix() string {
	if f.gzipped {
		return suffixGzip
	}
	return suffixRolled
}

// openLocked starts a new current file.
func (s *spool) openLocked(now time.Time) error {
	stamp := now.UTC().Truncate(time.Millisecond)
	if !stamp.After(s.lastStamp) {
		stamp = s.lastStamp.Add(time.Millisecond)
	}
	base := stamp.Format(stampLayout) + "-" + objectstore.NewUUID()
	f, err := os.OpenFile(s.path(base+suffixOpen), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("log spool: %v", err)
	}
	s.cur, s.curBase, s.curSize, s.curOpened, s.lastStamp = f, base, 0, now, stamp
	return nil
}

// roll closes the current file and queues it for upload.
func (s *spool) roll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollLocked()
}

// rollIfOlder rolls the current file once it has been open for d.
func (s *spool) rollIfOlder(d time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && now.Sub(s.curOpened) >= d {
		s.rollLocked()
	}
}

func (s *spool) rollLocked() {
	if s.cur == nil {
		return
	}
	f, base, size := s.cur, s.curBase, s.curSize
	s.cur, s.curBase, s.curSize = nil, "", 0
	if err := f.Close(); err != nil {
		s.lastErr = fmt.Errorf("log spool: closing %s: %v", base+suffixOpen, err)
	}
	if size == 0 {
		_ = os.Remove(s.path(base + suffixOpen))
		return
	}
	if err := os.Rename(s.path(base+suffixOpen), s.path(base+suffixRolled)); err != nil {
		// Left as .open: the next process recovers it.
		s.lastErr = fmt.Errorf("log spool: rolling %s: %v", base+suffixOpen, err)
		s.total -= size
		return
	}
	s.pending = append(s.pending, &spoolFile{base: base, size: size, raw: size})
	s.publishLocked()
	select {
	case s.rolled <- struct{}{}:
	default:
	}
}

// next hands the oldest pending file to the uploader, or nil.
func (s *spool) next() *spoolFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	f := s.pending[0]
	f.holds++
	return f
}

// release gives a file back after a failed upload; it stays first.
func (s *spool) release(f *spoolFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.holds--
}

// done deletes a file whose upload the store acknowledged.
func (s *spool) done(f *spoolFile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p == f {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			s.total -= f.size
			break
		}
	}
	s.publishLocked()
	err := os.Remove(s.path(f.base + f.suffix()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("log spool: deleting uploaded %s: %v", f.base+f.suffix(), err)
	}
	return nil
}

// compress gzips a rolled file into its .log.gz (synced before the
// rolled file is deleted, so a crash leaves one of the two whole).
func (s *spool) compress(f *spoolFile) error {
	s.compressMu.Lock()
	defer s.compressMu.Unlock()
	s.mu.Lock()
	gzipped := f.gzipped
	s.mu.Unlock()
	if gzipped {
		return nil
	}
	src, err := os.Open(s.path(f.base + suffixRolled))
	if err != nil {
		return fmt.Errorf("log spool: %w", err)
	}
	defer src.Close()
	tmpPath := s.path(f.base + suffixTmp)
	size, err := gzipTo(tmpPath, src)
	if err == nil {
		err = os.Rename(tmpPath, s.path(f.base+suffixGzip))
	}
	if err != nil {
		_ = os.Remove(tmpPath)
		return fmt.Errorf("log spool: compressing %s: %w", f.base+suffixRolled, err)
	}
	_ = os.Remove(s.path(f.base + suffixRolled))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total += size - f.size
	f.size, f.gzipped = size, true
	s.publishLocked()
	return nil
}

// compressIdle gzips rolled files waiting behind the one being
// uploaded, so that a store outage fills the spool with compressed
// files (5-10x more log in the same spool_max) rather than raw text.
func (s *spool) compressIdle() {
	for {
		s.mu.Lock()
		var f *spoolFile
		for _, p := range s.pending {
			if !p.gzipped && p.holds == 0 {
				f = p
				break
			}
		}
		if f != nil {
			f.holds++
		}
		s.mu.Unlock()
		if f == nil {
			return
		}
		err := s.compress(f)
		s.release(f)
		if err != nil {
			return // the uploader retries it and reports
		}
	}
}

// discard forgets a pending file that is gone from disk (deleted by
// hand): the uploader would otherwise retry it forever. Its bytes are
// counted as a write error.
func (s *spool) discard(f *spoolFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p == f {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			s.total -= f.size
			s.metrics.writeErrors.Add(float64(f.raw))
			break
		}
	}
	s.publishLocked()
}

// gzipTo writes src gzipped to path, syncs it and returns its size.
func gzipTo(path string, src io.Reader) (int64, error) {
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	// BestSpeed: a third of the default level's CPU, on the core that
	// serves requests, for a slightly larger file (JSON logs still shrink
	// about 8x).
	zw, _ := gzip.NewWriterLevel(dst, gzip.BestSpeed)
	if _, err := io.Copy(zw, src); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	if err := dst.Sync(); err != nil {
		return 0, err
	}
	fi, err := dst.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), dst.Close()
}

// gzipISize reads the uncompressed size (mod 4 GiB) from a gzip
// file's trailer (RFC 1952 section 2.3.1).
func gzipISize(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var tail [4]byte
	fi, err := f.Stat()
	if err != nil || fi.Size() < 4 {
		return 0
	}
	if _, err := f.ReadAt(tail[:], fi.Size()-4); err != nil {
		return 0
	}
	return int64(binary.LittleEndian.Uint32(tail[:]))
}

// takeErr returns and clears the last write-path error and the number
// of entries it cost since the last call.
func (s *spool) takeErr() (lost int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lost, err = s.writeErrors, s.lastErr
	s.lastErr, s.writeErrors = nil, 0
	return lost, err
}

// takeDrops returns and clears the bytes dropped since the last call.
func (s *spool) takeDrops() (oldest, refused int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest, refused = s.droppedOldest, s.refused
	s.droppedOldest, s.refused = 0, 0
	return oldest, refused
}

// stats reports the pending files and the bytes on disk.
func (s *spool) stats() (files int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending), s.total
}

func (s *spool) publishLocked() {
	s.metrics.pendingFiles.Set(float64(len(s.pending)))
	s.metrics.spoolBytes.Set(float64(s.total))
}
