package logship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// The adversarial review's cases (2026-12-02), each a test that failed
// before its fix.

// A line kept as JSON is exactly the object: other Unicode spaces around
// it make it plain text, which is wrapped (a kept line that is not valid
// JSON once shipped would break every reader of the object).
func TestAttackJSONDetectionIsExact(t *testing.T) {
	for _, l := range []string{"{\"a\":1}\f", "{\"a\":1}\v", "{\"a\":1}\u00a0", "{\"a\":1}\u2028", "\u0085{\"a\":1}"} {
		if isJSONObject([]byte(l)) {
			t.Errorf("%q taken for a JSON object", l)
		}
	}
	if !isJSONObject([]byte(" \t{\"a\":1}\t ")) {
		t.Error("a JSON object with JSON's own spaces around it was not kept")
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

// An output error ends the search with that error, not a deadlock of
// the readers blocked on their channels.
func TestAttackSearchOutputError(t *testing.T) {
	store := newSearchStore(t)
	now := time.Now().UTC()
	start := now.Add(-30 * time.Minute)
	var lines []string
	for i := 0; i < 20000; i++ {
		lines = append(lines, accessLine(start.Add(time.Duration(i)*time.Millisecond), 200, "/"+strings.Repeat("x", 100)))
	}
	shipObject(t, store, "logs", "web-1", "access", start, lines...)
	shipObject(t, store, "logs", "web-2", "access", start, lines...)
	done := make(chan error, 1)
	go func() {
		_, err := Search(context.Background(), store, SearchOptions{Prefix: "logs", Since: now.Add(-time.Hour)}, &failWriter{}, &bytes.Buffer{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("Search returned %v, want the output's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Search still running 5s after its output failed: deadlock")
	}
}

// A reload Caddy undoes (an app after ship_logs failed to start) gives
// the files back to the old config's follower.
func TestAttackFailedReloadGivesTheFilesBack(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	sp, err := openSpool(spool, metricsFor(spool, "files:zz"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.lock.Close()
	sp.configure(1<<30, 4<<30, onFullRefuseNew)
	cfg := tailConfig{dir: spool, globs: []string{filepath.Join(logs, "*.log")}, host: "h", maxLine: 1024, source: "files:zz"}
	old := startTailer(cfg, sp)  // running config
	newT := startTailer(cfg, sp) // new config's ShipLogs.Start
	stopTailer(newT)             // another app of the new config failed: Caddy stops the started ones
	appendFile(t, filepath.Join(logs, "app.log"), "after the failed reload\n")
	time.Sleep(time.Second)
	tailers.mu.Lock()
	running := tailers.byDir[spool]
	tailers.mu.Unlock()
	if running != old {
		t.Fatalf("the old config's follower is not running again after the failed reload")
	}
	defer stopTailer(old)
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[after the failed reload]" {
		t.Errorf("spooled %q after the failed reload, want the line written after it", got)
	}
}

// A file gone while the shipper was stopped whose inode another file of
// the directory reused is forgotten, not shipped from that file's start.
func TestAttackGoneFileInodeReuse(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	glob := filepath.Join(logs, "*.log")
	appendFile(t, filepath.Join(logs, "app.log"), "one\n")
	tl := testTailer(t, spool, 1024, glob)
	tl.poll(time.Now())
	tl.closeFiles()
	tl.sp.lock.Close()
	// While stopped: app.log rotated, the rotation deleted, its inode now
	// held by another file of the directory (simulated: point the
	// checkpoint at that file's inode).
	gz := filepath.Join(logs, "app.log.3.gz")
	os.WriteFile(gz, []byte("\x1f\x8b\x08\x00binary gzip bytes\n"), 0o644)
	os.Remove(filepath.Join(logs, "app.log"))
	fi, _ := os.Stat(gz)
	id := idOf(gz, fi)
	cp, _ := readCheckpoint(spool)
	for i := range cp.Files {
		cp.Files[i].Dev, cp.Files[i].Ino = id.dev, id.ino
	}
	data, _ := json.Marshal(cp)
	writeCheckpoint(spool, data)
	tl = testTailer(t, spool, 1024, glob)
	tl.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[one]" {
		t.Errorf("spooled %q, want only the line shipped before the restart", got)
	}
}

// A symlink and its target both matched are one file, shipped once,
// and idle polls do not rewrite the checkpoint.
func TestAttackSymlinkAndTarget(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	appendFile(t, filepath.Join(logs, "app-2026.log"), "one\n")
	os.Symlink(filepath.Join(logs, "app-2026.log"), filepath.Join(logs, "current.log"))
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	var inos []uint64
	for i := 0; i < 5; i++ {
		tl.poll(time.Now())
		fi, _ := os.Stat(filepath.Join(spool, checkpointName))
		inos = append(inos, idOf("", fi).ino)
	}
	for _, ino := range inos[1:] {
		if ino != inos[0] {
			t.Fatalf("checkpoint rewritten by idle polls: inodes %v", inos)
		}
	}
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[one]" {
		t.Errorf("spooled %q, want the line once", got)
	}
}

// A glob that matches the spool's own files does not ship them again.
func TestAttackGlobMatchesTheSpool(t *testing.T) {
	logs := t.TempDir()
	spool := logs
	appendFile(t, filepath.Join(logs, "app.log"), "one\ntwo\n")
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	tl.sp.roll()
	for i := 0; i < 3; i++ {
		tl.poll(time.Now())
		tl.sp.roll()
	}
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[one two]" {
		t.Errorf("spooled %q, want the file's two lines once", got)
	}
}

// A line of exactly max_line bytes and a CRLF is one record.
func TestAttackCRLFAtMaxLine(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	appendFile(t, filepath.Join(logs, "app.log"), strings.Repeat("a", 256)+"\r\n")
	tl := testTailer(t, spool, 256, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	recs := spooled(t, spool)
	if len(recs) != 1 || recs[0]["part"] != nil || len(fmt.Sprint(recs[0]["line"])) != 256 {
		t.Errorf("records %v, want one whole line", recs)
	}
}

// Short lines of a long path grow many times once wrapped: a batch's
// records stay bounded, and a spool of 32 MiB takes them all.
func TestAttackBatchAmplification(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "laravel-2026-12-02.log")
	appendFile(t, path, strings.Repeat("x\n", 1<<19))
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.sp.configure(16<<20, 32<<20, onFullDropOldest)
	tl.poll(time.Now())
	tl.poll(time.Now())
	_, total := tl.sp.stats()
	tf := func() *tailFile {
		for _, f := range tl.files {
			return f
		}
		return nil
	}()
	for range 200 {
		if tf.offset == 1<<20 {
			break
		}
		tl.poll(time.Now())
		tl.sp.roll()
		_, total = tl.sp.stats()
	}
	if tf.offset != 1<<20 || cap(tl.out) > 2*batchLimit {
		t.Errorf("read %d of %d bytes, record buffer %d bytes (spool %d)", tf.offset, 1<<20, cap(tl.out), total)
	}
}

// A checkpoint with impossible values is corrupt: set aside, no panic.
func TestAttackCheckpointOutOfRange(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	appendFile(t, filepath.Join(logs, "app.log"), strings.Repeat("y", 600)+"\n")
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	tl.closeFiles()
	tl.sp.lock.Close()
	cp, _ := readCheckpoint(spool)
	cp.Files[0].HeadLen = 300
	data, _ := json.Marshal(cp)
	writeCheckpoint(spool, data)
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("restore panicked: %v", r)
		}
	}()
	testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	if _, err := os.Stat(filepath.Join(spool, checkpointName+".corrupt")); err != nil {
		t.Errorf("the checkpoint with head_len 300 was not set aside: %v", err)
	}
}

// The longest record a shipper writes (a 16 MiB piece, escaped) is
// read by the search, and the lines after it too.
func TestAttackLongestRecordIsSearched(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	appendFile(t, filepath.Join(logs, "app.log"), strings.Repeat("a\tb", MaxMaxLine/3)+"\nafter\n")
	tl := testTailer(t, spool, MaxMaxLine, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	ents, _ := os.ReadDir(spool)
	for _, e := range ents {
		if _, suf, ok := splitSpoolName(e.Name()); ok && suf == suffixOpen {
			data, _ := os.ReadFile(filepath.Join(spool, e.Name()))
			first, _, _ := bytes.Cut(data, []byte("\n"))
			if len(first) <= MaxMaxLine {
				t.Fatalf("first record %d bytes: want one longer than max_line once escaped", len(first))
			}
			store := newSearchStore(t)
			now := time.Now().UTC()
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			shipObject(t, store, "logs", "web-1", "app", now.Add(-time.Minute), lines...)
			out, errOut, st := search(t, store, SearchOptions{Prefix: "logs", Since: now.Add(-time.Hour)})
			if strings.Count(out, "\n") != 2 || errOut != "" || st.Skipped != 0 {
				t.Errorf("search printed %d lines, stderr %q, stats %+v; want both", strings.Count(out, "\n"), errOut, st)
			}
		}
	}
}

// With the clock stepped back across a restart, a file started after
// the checkpoint still sorts after its mark, so a kill before the
// batch's checkpoint cuts the batch.
func TestAttackClockBack(t *testing.T) {
	spool := t.TempDir()
	future := time.Now().Add(time.Hour).UTC().Format(stampLayout) + "-00000000-0000-4000-8000-000000000000"
	writeCheckpoint(spool, []byte(`{"spool":{"base":"`+future+`","size":10},"files":[]}`))
	sp, err := openSpool(spool, metricsFor(spool, "files:zz"))
	if err != nil {
		t.Fatal(err)
	}
	sp.configure(1<<30, 4<<30, onFullRefuseNew)
	// the batch is written; the process is killed before its checkpoint.
	_ = sp.appendCommitted([]byte("{\"line\":\"uncommitted\"}\n"), func(spoolMark) error { return nil })
	sp.lock.Close()
	sp2, err := openSpool(spool, metricsFor(spool, "files:zz"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp2.lock.Close()
	files, bytes := sp2.stats()
	if files != 0 || bytes != 0 {
		t.Errorf("after the restart %d pending files, %d bytes; want the uncommitted batch cut", files, bytes)
	}
}

// The second review's cases.

// Many files with a line each are one batch: one checkpoint per poll,
// not one per file (each lists every file: quadratic).
func TestAttackOneCheckpointPerBatch(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	for i := range 300 {
		appendFile(t, filepath.Join(logs, fmt.Sprintf("f%03d.log", i)), fmt.Sprintf("line %d\n", i))
	}
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	before := metricValue(tl.metrics.checkpoints)
	tl.poll(time.Now())
	if n := metricValue(tl.metrics.checkpoints) - before; n != 1 {
		t.Errorf("one poll of 300 files saved %v checkpoints, want 1", n)
	}
	if got := lineTexts(t, spooled(t, spool)); len(got) != 300 {
		t.Errorf("spooled %d lines, want 300", len(got))
	}
}

// copytruncate with older copies beside the file (same first bytes): the
// copy taken is the one that has the bytes before where the shipper was.
func TestAttackCopytruncatePicksTheRightCopy(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "app.log")
	appendFile(t, path, "# app log v1\n")
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	appendFile(t, path, "new 1\nnew 2\n")
	// last week's copy: same header, other lines, older
	old := filepath.Join(logs, "app.log-20261124")
	if err := os.WriteFile(old, []byte("# app log v1\nold 1\nold 2\nold 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(old, time.Now().Add(-7*24*time.Hour), time.Now().Add(-7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(filepath.Join(logs, "app.log-20261201"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	tl.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[# app log v1 new 1 new 2]" {
		t.Errorf("spooled %q, want the lines from today's copy", got)
	}
}

// A file in the checkpoint that the config's globs do not match, still
// where it was, is remembered, not read or forgotten: a config that
// matches it again reads on (a reload that added its glob, undone).
func TestAttackDormantFilesAreRemembered(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	appendFile(t, filepath.Join(logs, "app.log"), "a1\n")
	appendFile(t, filepath.Join(logs, "worker.txt"), "w1\nw2\n")
	b := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"), filepath.Join(logs, "*.txt"))
	b.poll(time.Now())
	b.closeFiles()
	b.sp.lock.Close()
	a := testTailer(t, spool, 1024, filepath.Join(logs, "*.log")) // the old config again
	appendFile(t, filepath.Join(logs, "worker.txt"), "w3\n")
	for range 3 {
		a.poll(time.Now().Add(time.Minute)) // past goneGrace: nothing forgotten
	}
	a.closeFiles()
	a.sp.lock.Close()
	c := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"), filepath.Join(logs, "*.txt"))
	c.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[a1 w1 w2 w3]" {
		t.Errorf("spooled %q, want each line once", got)
	}
}

// CR at the end of a line: one CR is the line's end, another is text;
// a max_line line whose LF has not come yet waits, also with max_line
// of a MiB (the read buffer holds the line and its CRLF).
func TestAttackCarriageReturns(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "app.log")
	appendFile(t, path, "abc\r\r\n"+strings.Repeat("m", 1<<20)+"\r")
	tl := testTailer(t, spool, 1<<20, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	appendFile(t, path, "\n")
	tl.poll(time.Now())
	recs := spooled(t, spool)
	if len(recs) != 2 || recs[0]["line"] != "abc\r" || recs[1]["part"] != nil || len(fmt.Sprint(recs[1]["line"])) != 1<<20 {
		t.Errorf("%d records (first %q): want \"abc\\r\" and one whole 1 MiB line", len(recs), recs[0]["line"])
	}
}

// A checkpoint whose mark is far in the future (a clock that was wrong)
// does not push new spool files into the future: they are named by the
// clock, and a file written past the mark is still cut after a kill.
func TestAttackMarkFromTheFuture(t *testing.T) {
	spool := t.TempDir()
	future := time.Now().Add(365*24*time.Hour).UTC().Format(stampLayout) + "-00000000-0000-4000-8000-000000000000"
	if err := writeCheckpoint(spool, []byte(`{"spool":{"base":"`+future+`","size":10},"files":[]}`)); err != nil {
		t.Fatal(err)
	}
	sp, err := openSpool(spool, metricsFor(spool, "files:test"))
	if err != nil {
		t.Fatal(err)
	}
	sp.configure(1<<30, 4<<30, onFullRefuseNew)
	if err := sp.appendCommitted([]byte("{\"line\":\"x\"}\n"), func(spoolMark) error { return nil }); err != nil {
		t.Fatal(err)
	}
	stamp, _ := time.Parse(stampLayout, sp.curBase[:len(stampLayout)])
	if time.Since(stamp) > time.Minute || time.Until(stamp) > time.Minute {
		t.Errorf("new spool file named %s, want the clock's time", sp.curBase)
	}
	sp.lock.Close()
}

// A search --follow that lost a GET halfway reads the object again from
// where it stopped: every line once.
type breakingStore struct {
	*listRecorder
	mu     sync.Mutex
	broken map[string]bool
}

func (b *breakingStore) Get(ctx context.Context, key string, rng *objectstore.ByteRange, ifMatch string) (*objectstore.Part, error) {
	p, err := b.listRecorder.Get(ctx, key, rng, ifMatch)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken[key] {
		return p, nil
	}
	b.broken[key] = true
	p.ReadCloser = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(p.ReadCloser, p.Info.Size/2), iotest.ErrReader(errors.New("connection reset"))), p.ReadCloser}
	return p, nil
}

func TestAttackFollowRetriesWithoutRepeating(t *testing.T) {
	store := &breakingStore{listRecorder: newSearchStore(t), broken: map[string]bool{}}
	now := time.Now().UTC()
	var lines []string
	for i := range 5000 {
		lines = append(lines, accessLine(now.Add(-time.Minute+time.Duration(i)*time.Millisecond), 200, fmt.Sprintf("/n%d", i)))
	}
	shipObject(t, store, "logs", "n1", "app", now.Add(-2*time.Minute), lines...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := Search(ctx, store, SearchOptions{Prefix: "logs", Since: now.Add(-time.Hour), Follow: true, FollowEvery: 50 * time.Millisecond}, out, errOut)
		done <- err
	}()
	waitFor(t, "every line", func() bool {
		return len(uris(out.String())) >= 5000
	})
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	got := uris(out.String())
	if len(got) != 5000 || got[0] != "/n0" || got[4999] != "/n4999" || !strings.Contains(errOut.String(), "connection reset") {
		t.Errorf("printed %d lines (stderr %q), want each of 5000 once", len(got), errOut.String())
	}
}

// A file shipper whose spool another process held at one load gets its
// own directory at the next load once it is free, not the fallback.
func TestAttackShipperRetriesItsSpoolDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	held, err := lockDir(filepath.Join(dir, lockName)) // "another process"
	if err != nil {
		t.Fatal(err)
	}
	st := testSettings()
	st.kind = kindFiles
	tmpl, _ := parseKeyTemplate(st.key)
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	sl, err := acquire(dir, registration{cfg: ctx1, settings: st, tmpl: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	if sl.dir == dir {
		t.Fatal("acquired a held spool directory")
	}
	release(sl, ctx1)
	held.Close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	sl2, err := acquire(dir, registration{cfg: ctx2, settings: st, tmpl: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	defer release(sl2, ctx2)
	if sl2.dir != dir {
		t.Errorf("spooling to %s once %s was free, want the directory itself", sl2.dir, dir)
	}
}
