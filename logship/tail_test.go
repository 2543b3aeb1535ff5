package logship

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// testTailer is a file shipper on a fresh spool, polled by hand.
func testTailer(t *testing.T, dir string, maxLine int, globs ...string) *tailer {
	t.Helper()
	sp, err := openSpool(dir, metricsFor(dir, "files:test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.lock.Close() })
	sp.configure(1<<30, 4<<30, onFullRefuseNew)
	tl := newTailer(tailConfig{dir: dir, globs: globs, host: "web-1", maxLine: maxLine, source: "files:test"}, sp)
	tl.restore()
	return tl
}

// spooled reads every record the spool holds, oldest file first.
func spooled(t *testing.T, dir string) []map[string]any {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if _, suffix, ok := splitSpoolName(e.Name()); ok && (suffix == suffixOpen || suffix == suffixRolled) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []map[string]any
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("spooled line %q is not JSON: %v", line, err)
			}
			out = append(out, m)
		}
	}
	return out
}

// lineTexts joins split pieces and returns each record's text: "line"
// of wrapped records, "msg" of JSON ones.
func lineTexts(t *testing.T, recs []map[string]any) []string {
	t.Helper()
	var out []string
	var piece strings.Builder
	for _, r := range recs {
		if s, ok := r["line"].(string); ok {
			if _, split := r["part"]; split {
				piece.WriteString(s)
				if r["more"] == true {
					continue
				}
				s = piece.String()
				piece.Reset()
			}
			out = append(out, s)
			continue
		}
		out = append(out, fmt.Sprint(r["msg"]))
	}
	if piece.Len() > 0 {
		t.Fatalf("a split line never finished: %q", piece.String())
	}
	return out
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestTailerWrapsSplitsAndKeepsJSON(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "app.log")
	long := strings.Repeat("é", 400) // 800 bytes: pieces cut between characters
	appendFile(t, path, "plain one\r\n\n"+`{"msg":"json kept","ts":1.5}`+"\n"+long+"\n"+`{"msg":"broken json"`+"\nunfinished")
	tl := testTailer(t, spool, 256, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	recs := spooled(t, spool)
	got := lineTexts(t, recs)
	want := []string{"plain one", "json kept", long, `{"msg":"broken json"`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records %q, want %q", got, want)
	}
	if recs[0]["host"] != "web-1" || recs[0]["file"] != path || recs[0]["ts"] == nil {
		t.Errorf("wrapped record %v: want host, file and ts", recs[0])
	}
	if _, wrapped := recs[1]["line"]; wrapped || recs[1]["ts"] != 1.5 {
		t.Errorf("a JSON line was changed: %v", recs[1])
	}
	pieces := 0
	for _, r := range recs {
		if s, ok := r["line"].(string); ok {
			if len(s) > 256 || !utf8.ValidString(s) {
				t.Errorf("piece of %d bytes (valid UTF-8: %v), want at most 256 and whole characters", len(s), utf8.ValidString(s))
			}
			if r["part"] != nil {
				pieces++
			}
		}
	}
	if pieces != 4 {
		t.Errorf("the 800-byte line came in %d pieces, want 4", pieces)
	}
	// The unfinished line waits; once finished it ships.
	appendFile(t, path, " now\n")
	tl.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); got[len(got)-1] != "unfinished now" {
		t.Errorf("last record %q, want the finished line", got[len(got)-1])
	}
}

func TestTailerFollowsRotationAndRestarts(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "app.log")
	glob := filepath.Join(logs, "*.log")
	n := 0
	write := func(k int) {
		var b strings.Builder
		for range k {
			n++
			fmt.Fprintf(&b, "line %d\n", n)
		}
		appendFile(t, path, b.String())
	}
	write(10)
	tl := testTailer(t, spool, 1024, glob)
	tl.poll(time.Now())

	// rename + create: the rest of the old file, then the new one.
	write(5)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", "line 16\n") // the app has not reopened yet
	n++
	write(5)
	tl.poll(time.Now())

	// copytruncate, the shipper behind: the copy has what it missed.
	write(5)
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path+".2", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	write(3)
	tl.poll(time.Now())

	// A restart (the spool reopened, the checkpoint read) reads nothing
	// twice, and a file renamed while stopped is finished.
	tl.closeFiles()
	tl.sp.lock.Close()
	write(2)
	if err := os.Rename(path, path+".3"); err != nil {
		t.Fatal(err)
	}
	write(2)
	tl = testTailer(t, spool, 1024, glob)
	tl.poll(time.Now())

	// A new file matching the glob.
	appendFile(t, filepath.Join(logs, "other.log"), "other 1\n")
	tl.poll(time.Now())

	// A second restart: what the first one restored is still known.
	tl.closeFiles()
	tl.sp.lock.Close()
	tl = testTailer(t, spool, 1024, glob)
	tl.poll(time.Now())

	got := lineTexts(t, spooled(t, spool))
	seen := map[string]int{}
	for _, l := range got {
		seen[l]++
	}
	for i := 1; i <= n; i++ {
		if c := seen[fmt.Sprintf("line %d", i)]; c != 1 {
			t.Errorf("line %d shipped %d times", i, c)
		}
	}
	if seen["other 1"] != 1 || len(got) != n+1 {
		t.Errorf("%d records, want %d: %q", len(got), n+1, got)
	}
}

func TestTailerCheckpointAndSpoolAgreeAfterACrash(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "app.log")
	appendFile(t, path, "one\ntwo\n")
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())

	// A batch written, its checkpoint never saved (kill -9 between the
	// two): the spool is cut back at the next open, the lines read again.
	appendFile(t, path, "three\n")
	err := tl.sp.appendCommitted([]byte(`{"line":"three"}`+"\n"), func(spoolMark) error { return errors.New("killed") })
	if err == nil {
		t.Fatal("a failed save was not reported")
	}
	if got := lineTexts(t, spooled(t, spool)); len(got) != 2 {
		t.Fatalf("after a failed save the spool holds %q, want the two committed lines", got)
	}
	// The same with the bytes left behind (the process died before it
	// could cut them).
	cur := filepath.Join(spool, tl.sp.curBase+suffixOpen)
	appendFile(t, cur, `{"line":"three"}`+"\n")
	tl.closeFiles()
	tl.sp.lock.Close()
	tl = testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[one two three]" {
		t.Fatalf("after the crash the spool holds %q, want [one two three]", got)
	}
}

func TestTailerWaitsWhenTheSpoolIsFull(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "app.log")
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.sp.configure(64, 128, onFullRefuseNew)
	appendFile(t, path, strings.Repeat("x", 200)+"\n")
	tl.poll(time.Now())
	if got := spooled(t, spool); len(got) != 0 {
		t.Fatalf("a full spool took %d records", len(got))
	}
	tl.sp.configure(1<<20, 2<<20, onFullRefuseNew)
	tl.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); len(got) != 1 {
		t.Fatalf("once there was room the spool holds %d records, want the waiting line", len(got))
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\x00\x1f\t\r\n", "é漢🙂", "\xff\xfe bad", "\u2028\u2029\u0085", "<html>&"} {
		got := appendJSONString(nil, []byte(s))
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, got, err)
		}
		var want string // encoding/json's reading: U+FFFD per invalid byte
		std, _ := json.Marshal(s)
		_ = json.Unmarshal(std, &want)
		if back != want {
			t.Errorf("%q came back as %q", s, back)
		}
		if bytes.ContainsAny(got, "\u2028\u2029\u0085\n") {
			t.Errorf("%q encoded with a raw line separator: %q", s, got)
		}
	}
}

// FuzzTailRecords: whatever a log file holds, every record is one JSON
// object on one line, and the records give back the file's lines.
func FuzzTailRecords(f *testing.F) {
	f.Add([]byte("a\nb\r\n{\"x\":1}\n"), 16)
	f.Add([]byte(strings.Repeat("é", 100)+"\n\xff\n"), 7)
	f.Add([]byte("{\"a\":\"\u2028\"}\nno newline"), 300)
	f.Fuzz(func(t *testing.T, data []byte, maxLine int) {
		maxLine = 4 + abs(maxLine)%300
		tl := &tailer{cfg: tailConfig{host: "h", maxLine: maxLine}, metrics: tailMetricsFor("files:fuzz")}
		tf := &tailFile{path: "/f"}
		tf.setWrap("h")
		consumed, _ := tl.records(tf, data, true)
		if consumed != len(data) {
			t.Fatalf("final records consumed %d of %d bytes", consumed, len(data))
		}
		for _, rec := range bytes.Split(bytes.TrimSuffix(tl.out, []byte("\n")), []byte("\n")) {
			if len(tl.out) == 0 {
				break
			}
			if !json.Valid(rec) || rec[0] != '{' {
				t.Fatalf("record %q is not a JSON object", rec)
			}
			if bytes.Contains(rec, []byte("\u2028")) {
				t.Fatalf("record %q holds a raw U+2028", rec)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// TestTailerFirstBatchAndACorruptCheckpoint: a kill between the very
// first batch and its checkpoint finds a checkpoint anyway (one is
// written before any line), and a checkpoint that cannot be read is set
// aside: the files are read again (twice rather than never).
func TestTailerFirstBatchAndACorruptCheckpoint(t *testing.T) {
	logs, spool := t.TempDir(), t.TempDir()
	appendFile(t, filepath.Join(logs, "app.log"), "one\n")
	tl := testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	if err := tl.sp.appendCommitted([]byte(`{"line":"one"}`+"\n"), func(spoolMark) error { return errors.New("killed") }); err == nil {
		t.Fatal("a failed save was not reported")
	}
	// The bytes of that batch left behind, as a kill leaves them.
	appendFile(t, filepath.Join(spool, tl.sp.curBase+suffixOpen), `{"line":"one"}`+"\n")
	tl.closeFiles()
	tl.sp.lock.Close()
	tl = testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[one]" {
		t.Fatalf("after a kill before the first checkpoint the spool holds %q, want [one]", got)
	}
	tl.closeFiles()
	tl.sp.lock.Close()
	if err := os.WriteFile(filepath.Join(spool, checkpointName), []byte(`{"spool":`), 0o640); err != nil {
		t.Fatal(err)
	}
	tl = testTailer(t, spool, 1024, filepath.Join(logs, "*.log"))
	tl.poll(time.Now())
	if got := lineTexts(t, spooled(t, spool)); fmt.Sprint(got) != "[one one]" {
		t.Fatalf("after a corrupt checkpoint the spool holds %q, want the line kept and read again", got)
	}
	if _, err := os.Stat(filepath.Join(spool, checkpointName+".corrupt")); err != nil {
		t.Errorf("the corrupt checkpoint was not set aside: %v", err)
	}
}

// BenchmarkTailRecords: turning a chunk of log lines into spool records
// (wrapping plain lines, checking JSON ones), the shipper's own work per
// byte besides reading, gzip and upload.
func BenchmarkTailRecords(b *testing.B) {
	var chunk strings.Builder
	for i := 0; chunk.Len() < 1<<20; i++ {
		if i%10 == 0 {
			fmt.Fprintf(&chunk, `{"message":"order placed","context":{"order_id":%d},"level":200,"level_name":"INFO","datetime":"2026-12-02T07:13:46.590123+00:00"}`+"\n", i)
		} else {
			fmt.Fprintf(&chunk, "[2026-12-02 07:13:46] production.INFO: GET /api/products/%d user=%d took 12ms\n", i, i*7)
		}
	}
	data := []byte(chunk.String())
	tl := &tailer{cfg: tailConfig{host: "web-1", maxLine: DefaultMaxLine}, metrics: tailMetricsFor("files:bench")}
	tf := &tailFile{path: "/var/www/app/storage/logs/laravel.log"}
	tf.setWrap("web-1")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		tl.out = tl.out[:0]
		tl.records(tf, data, false)
	}
}
