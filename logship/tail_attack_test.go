package logship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if tf.offset != 1<<20 || cap(tl.out) > 2*readChunk {
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
