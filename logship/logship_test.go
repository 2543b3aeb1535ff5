package logship

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// flakyStore is a FileStore whose Put fails while down or for the next
// failures calls, and which records the keys it accepted.
type flakyStore struct {
	*objectstore.FileStore
	mu       sync.Mutex
	down     bool
	failures int
	keys     []string
}

func newFlakyStore(t *testing.T) *flakyStore {
	t.Helper()
	fs := &objectstore.FileStore{Root: t.TempDir()}
	if err := fs.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return &flakyStore{FileStore: fs}
}

func (s *flakyStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts objectstore.PutOptions) (objectstore.ObjectInfo, error) {
	s.mu.Lock()
	fail := s.down || s.failures > 0
	if s.failures > 0 {
		s.failures--
	}
	s.mu.Unlock()
	if fail {
		return objectstore.ObjectInfo{}, fmt.Errorf("test store: %w", objectstore.ErrUnavailable)
	}
	info, err := s.FileStore.Put(ctx, key, body, size, opts)
	if err == nil {
		s.mu.Lock()
		s.keys = append(s.keys, key)
		s.mu.Unlock()
	}
	return info, err
}

func (s *flakyStore) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *flakyStore) acceptedKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// lines reads every object under prefix, in key order, gunzipped, as
// lines.
func (s *flakyStore) lines(t *testing.T) []string {
	t.Helper()
	var out []string
	err := s.List(context.Background(), "", func(oi objectstore.ObjectInfo) error {
		obj, err := s.Open(context.Background(), oi.Key)
		if err != nil {
			return err
		}
		defer obj.Close()
		zr, err := gzip.NewReader(obj)
		if err != nil {
			return fmt.Errorf("%s: %v", oi.Key, err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			return err
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testSettings() settings {
	return settings{
		store: "logs", prefix: "p", key: DefaultKey, host: "node1", name: "access",
		rollSize: 1 << 20, spoolMax: 8 << 20, onFull: onFullDropOldest,
		rollInterval: time.Hour, flushTimeout: 5 * time.Second, maxBackoff: 50 * time.Millisecond,
	}
}

// startTestSlot runs a slot on dir with store as the looked-up store,
// without Caddy; the returned func closes its shipper.
func startTestSlot(t *testing.T, dir string, st settings, store objectstore.Store) (*slot, func()) {
	t.Helper()
	sp, err := openSpool(dir, metricsFor(dir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := parseKeyTemplate(st.key)
	if err != nil {
		t.Fatal(err)
	}
	sp.configure(st.rollSize, st.spoolMax, st.onFull)
	reg := registration{cfg: context.Background(), settings: st, tmpl: tmpl}
	// No registrations: the slot uploads to the last config's store, as
	// after its config stopped.
	reg.store = store
	sl := &slot{dir: dir, spool: sp, last: reg}
	sl.shipper = startShipper(sl)
	var once sync.Once
	closeFn := func() {
		once.Do(func() {
			sl.shipper.close(st.flushTimeout)
			sp.lock.Close()
		})
	}
	t.Cleanup(closeFn)
	return sl, closeFn
}

func writeLines(t *testing.T, w io.Writer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := fmt.Fprintf(w, "line %06d\n", i); err != nil {
			t.Fatal(err)
		}
	}
}

func wantLines(t *testing.T, got []string, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d lines, want %d", len(got), to-from)
	}
	for i, l := range got {
		if want := fmt.Sprintf("line %06d", from+i); l != want {
			t.Fatalf("line %d is %q, want %q (order lost)", i, l, want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != lockName {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestShipsRolledFilesInOrderAndDeletesThem(t *testing.T) {
	store := newFlakyStore(t)
	st := testSettings()
	st.rollSize = 100 // a few lines per file
	dir := t.TempDir()
	sl, closeFn := startTestSlot(t, dir, st, store)
	writeLines(t, sl.spool, 0, 200)
	closeFn()
	wantLines(t, store.lines(t), 0, 200)
	keys := store.acceptedKeys()
	if len(keys) < 10 {
		t.Fatalf("%d objects; roll_size 100 should give more than 10", len(keys))
	}
	for i, k := range keys {
		if !strings.HasPrefix(k, "p/node1/") || !strings.HasSuffix(k, ".log.gz") || !strings.Contains(k, "/access-") {
			t.Fatalf("key %q does not follow the template", k)
		}
		if i > 0 && k <= keys[i-1] {
			t.Fatalf("keys not in upload order: %q after %q", k, keys[i-1])
		}
	}
	if left := spoolFiles(t, dir); len(left) != 0 {
		t.Fatalf("spool not empty after everything was shipped: %v", left)
	}
	if got := metricValue(shippedFiles.WithLabelValues(dir, "log:test")); int(got) != len(keys) {
		t.Fatalf("shipped_files_total %v, want %d", got, len(keys))
	}
}

func TestRollsByTime(t *testing.T) {
	store := newFlakyStore(t)
	st := testSettings()
	st.rollInterval = 50 * time.Millisecond
	sl, _ := startTestSlot(t, t.TempDir(), st, store)
	writeLines(t, sl.spool, 0, 3)
	waitFor(t, "a time-rolled upload", func() bool { return len(store.acceptedKeys()) == 1 })
	wantLines(t, store.lines(t), 0, 3)
}

func TestRetriesUntilTheStoreIsBackInOrder(t *testing.T) {
	store := newFlakyStore(t)
	store.setDown(true)
	st := testSettings()
	st.rollSize = 200
	dir := t.TempDir()
	sl, closeFn := startTestSlot(t, dir, st, store)
	writeLines(t, sl.spool, 0, 100)
	waitFor(t, "failed attempts", func() bool { return metricValue(uploadFailures.WithLabelValues(dir, "log:test")) >= 3 })
	if n := len(store.acceptedKeys()); n != 0 {
		t.Fatalf("%d uploads accepted while the store was down", n)
	}
	if files, _ := sl.spool.stats(); files < 5 {
		t.Fatalf("%d pending files, want the rolled files kept", files)
	}
	waitFor(t, "the waiting files compressed in the background", func() bool {
		for _, name := range spoolFiles(t, dir) {
			if strings.HasSuffix(name, suffixRolled) {
				return false
			}
		}
		return true
	})
	store.setDown(false)
	writeLines(t, sl.spool, 100, 150)
	closeFn()
	wantLines(t, store.lines(t), 0, 150)
}

func TestCloseGivesUpAtTheFlushTimeoutAndTheNextStartShips(t *testing.T) {
	store := newFlakyStore(t)
	store.setDown(true)
	st := testSettings()
	st.flushTimeout = 300 * time.Millisecond
	dir := t.TempDir()
	sl, closeFn := startTestSlot(t, dir, st, store)
	writeLines(t, sl.spool, 0, 10)
	start := time.Now()
	closeFn()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("close took %v with flush_timeout 300ms", took)
	}
	if len(spoolFiles(t, dir)) != 1 {
		t.Fatalf("spool holds %v, want the one unshipped file", spoolFiles(t, dir))
	}
	store.setDown(false)
	_, closeFn = startTestSlot(t, dir, st, store)
	closeFn()
	wantLines(t, store.lines(t), 0, 10)
}

func TestRecoversWhatACrashLeft(t *testing.T) {
	dir := t.TempDir()
	st := testSettings()
	st.rollSize = 40
	// A "crashed" process: files rolled, one being written, none shipped.
	sp, err := openSpool(dir, metricsFor(dir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	sp.configure(st.rollSize, st.spoolMax, st.onFull)
	writeLines(t, sp, 0, 9) // 12 bytes a line: files of 4 lines, one open
	first := sp.next()
	if err := sp.compress(first); err != nil {
		t.Fatal(err)
	}
	// A compression cut short, and a rolled copy not yet deleted.
	os.WriteFile(filepath.Join(dir, first.base+suffixTmp), []byte("partial"), 0o640)
	os.WriteFile(filepath.Join(dir, first.base+suffixRolled), []byte("line 000000\n"), 0o640)
	sp.lock.Close() // the kernel does this when a process dies

	store := newFlakyStore(t)
	_, closeFn := startTestSlot(t, dir, st, store)
	closeFn()
	wantLines(t, store.lines(t), 0, 9)
}

func TestSpoolDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, metricsFor(dir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.lock.Close()
	if _, err := openSpool(dir, metricsFor(dir, "log:test")); err == nil {
		t.Fatal("a second spool on a locked directory opened")
	}
}

func TestSpoolFullPolicies(t *testing.T) {
	for _, policy := range []string{onFullDropOldest, onFullRefuseNew} {
		t.Run(policy, func(t *testing.T) {
			store := newFlakyStore(t)
			store.setDown(true)
			st := testSettings()
			st.rollSize, st.spoolMax, st.onFull = 120, 480, policy
			st.flushTimeout = 10 * time.Millisecond
			dir := t.TempDir()
			sl, closeFn := startTestSlot(t, dir, st, store)
			writeLines(t, sl.spool, 0, 100) // 1200 bytes into 480
			if _, total := sl.spool.stats(); total > st.spoolMax {
				t.Fatalf("spool holds %d bytes, over spool_max %d", total, st.spoolMax)
			}
			oldest := metricValue(droppedBytes.WithLabelValues(dir, "log:test", reasonDropOldest))
			refused := metricValue(droppedBytes.WithLabelValues(dir, "log:test", reasonRefuseNew))
			closeFn()
			store.setDown(false)
			st.flushTimeout = 5 * time.Second
			_, closeFn = startTestSlot(t, dir, st, store)
			closeFn()
			got := store.lines(t)
			kept := float64(12 * len(got))
			if kept+oldest+refused != 1200 {
				t.Fatalf("kept %v + dropped oldest %v + refused %v bytes != 1200 written", kept, oldest, refused)
			}
			switch policy {
			case onFullDropOldest:
				if oldest == 0 || refused != 0 || got[len(got)-1] != "line 000099" {
					t.Fatalf("drop_oldest: dropped %v oldest, %v new; last line %q", oldest, refused, got[len(got)-1])
				}
			case onFullRefuseNew:
				if refused == 0 || oldest != 0 || got[0] != "line 000000" {
					t.Fatalf("refuse_new: dropped %v oldest, %v new; first line %q", oldest, refused, got[0])
				}
			}
		})
	}
}

func TestRetriedUploadKeepsItsKey(t *testing.T) {
	store := newFlakyStore(t)
	store.failures = 2
	st := testSettings()
	sl, closeFn := startTestSlot(t, t.TempDir(), st, store)
	writeLines(t, sl.spool, 0, 5)
	f := func() string { sl.spool.mu.Lock(); defer sl.spool.mu.Unlock(); return sl.spool.curBase }()
	closeFn()
	keys := store.acceptedKeys()
	if len(keys) != 1 || !strings.HasSuffix(keys[0], "-"+f[len(stampLayout)+1:]+".log.gz") {
		t.Fatalf("keys %v, want one ending in the spool file's uuid %s", keys, f)
	}
	if !bytes.Contains([]byte(keys[0]), []byte(f[:len(stampLayout)])) {
		t.Fatalf("key %q lacks the spool file's time %s", keys[0], f[:len(stampLayout)])
	}
}

// metricValue reads a counter or gauge.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestAVanishedSpoolFileDoesNotBlockTheOthers(t *testing.T) {
	store := newFlakyStore(t)
	store.setDown(true)
	st := testSettings()
	st.rollSize = 40
	dir := t.TempDir()
	sl, closeFn := startTestSlot(t, dir, st, store)
	writeLines(t, sl.spool, 0, 4) // one rolled file of 4 lines
	waitFor(t, "a failed attempt", func() bool { return metricValue(uploadFailures.WithLabelValues(dir, "log:test")) >= 1 })
	for _, name := range spoolFiles(t, dir) {
		if strings.HasSuffix(name, suffixRolled) || strings.HasSuffix(name, suffixGzip) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	store.setDown(false)
	writeLines(t, sl.spool, 4, 8)
	closeFn()
	wantLines(t, store.lines(t), 4, 8)
}

func TestNewFilesSortAfterRecoveredOnesWhenTheClockWentBack(t *testing.T) {
	dir := t.TempDir()
	future := time.Now().Add(time.Hour).UTC().Format(stampLayout) + "-" + objectstore.NewUUID()
	if err := os.WriteFile(filepath.Join(dir, future+suffixRolled), []byte("line 000000\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	sp, err := openSpool(dir, metricsFor(dir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.lock.Close()
	sp.configure(1<<20, 8<<20, onFullDropOldest)
	writeLines(t, sp, 1, 2)
	sp.roll()
	if len(sp.pending) != 2 || sp.pending[1].base <= sp.pending[0].base {
		t.Fatalf("pending %v: the new file must sort after the recovered one", []string{sp.pending[0].base, sp.pending[len(sp.pending)-1].base})
	}
}

func TestSpoolingBesideABusyDirectorySurvivesReloads(t *testing.T) {
	processExiting = func() bool { return true }
	defer func() { processExiting = caddy.Exiting }()
	dir := filepath.Join(t.TempDir(), "spool")
	held, err := openSpool(dir, metricsFor(dir, "log:test")) // "another process"
	if err != nil {
		t.Fatal(err)
	}
	defer held.lock.Close()
	st := testSettings()
	tmpl, _ := parseKeyTemplate(st.key)
	var slots []*slot
	cfgs := []context.Context{context.Background(), context.WithValue(context.Background(), struct{}{}, 2)}
	for _, cfg := range cfgs { // a config, then the reload's
		sl, err := acquire(dir, registration{cfg: cfg, settings: st, tmpl: tmpl})
		if err != nil {
			t.Fatalf("acquire %d with the directory busy: %v", len(slots)+1, err)
		}
		slots = append(slots, sl)
	}
	if slots[0] != slots[1] || !strings.HasPrefix(slots[0].dir, dir+".pid") {
		t.Fatalf("slots %s and %s, want one beside %s", slots[0].dir, slots[1].dir, dir)
	}
	for _, cfg := range cfgs {
		release(slots[0], cfg)
	}
	registry.mu.Lock()
	delete(registry.slots, slots[0].dir)
	registry.mu.Unlock()
	slots[0].spool.lock.Close()
}

// TestWriterWithoutItsStoreRaisesTheAlarm: a writer whose config runs but
// never handed over its store says so within seconds, in a metric and an
// error log, and takes both back once the store arrives.
func TestWriterWithoutItsStoreRaisesTheAlarm(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, metricsFor(dir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.lock.Close()
	st := testSettings()
	tmpl, _ := parseKeyTemplate(st.key)
	reg := registration{cfg: context.Background(), settings: st, tmpl: tmpl}
	sl := &slot{dir: dir, spool: sp, regs: []registration{reg}, last: reg}
	logs := observeLogs(t)

	var alarm storeAlarm
	t0 := time.Now()
	alarm.check(sl, t0)
	if v := metricValue(sp.metrics.storeReady); v != 0 {
		t.Fatalf("store_ready = %v while waiting for the store, want 0", v)
	}
	alarm.check(sl, t0.Add(storeAlarmAfter/2))
	if n := logs.FilterMessageSnippet("no store to ship to").Len(); n != 0 {
		t.Fatalf("alarm logged %d times before %v", n, storeAlarmAfter)
	}
	alarm.check(sl, t0.Add(storeAlarmAfter+time.Second))
	alarm.check(sl, t0.Add(storeAlarmAfter+2*time.Second)) // not again within storeAlarmEvery
	if n := logs.FilterMessageSnippet("no store to ship to").FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Fatalf("alarm logged %d times after %v, want 1", n, storeAlarmAfter)
	}

	sl.started(reg.cfg, &flakyStore{FileStore: &objectstore.FileStore{Root: t.TempDir()}})
	alarm.check(sl, t0.Add(storeAlarmAfter+3*time.Second))
	if v := metricValue(sp.metrics.storeReady); v != 1 {
		t.Fatalf("store_ready = %v once the store arrived, want 1", v)
	}
	if n := logs.FilterMessageSnippet("shipping resumes").Len(); n != 1 {
		t.Fatalf("recovery logged %d times, want 1", n)
	}
}

// observeLogs records what the package logs until the test ends.
func observeLogs(t *testing.T) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	prev := logger
	logger = func() *zap.Logger { return zap.New(core) }
	t.Cleanup(func() { logger = prev })
	return logs
}

// TestLineSeparatorsAreEscaped: U+2028 and U+2029 inside a logged field
// are shipped escaped, so every reader sees one JSON object per line.
func TestLineSeparatorsAreEscaped(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"msg":"plain"}`, `{"msg":"plain"}`},
		{"{\"uri\":\"/a\u2028b\"}", `{"uri":"/a\u2028b"}`},
		{"{\"uri\":\"\u2029\u2028\u2028\"}", `{"uri":"\u2029\u2028\u2028"}`},
		{"{\"msg\":\"\u20ac \u2027 \u202a\"}", "{\"msg\":\"\u20ac \u2027 \u202a\"}"}, // neighbours stay
		{"\xe2\x80", "\xe2\x80"},                                                     // a cut sequence stays as it is
		{"{\"ua\":\"a\u0085b\"}", `{"ua":"a\u0085b"}`},
	} {
		got := escapeLineSeparators([]byte(tc.in))
		if string(got) != tc.want {
			t.Errorf("escapeLineSeparators(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.ContainsAny(string(got), "\u0085\u2028\u2029") {
			t.Errorf("%q still holds a line separator", got)
		}
		var v any
		if json.Valid([]byte(tc.in)) && json.Unmarshal(got, &v) != nil {
			t.Errorf("%q is no longer JSON", got)
		}
	}
}

// FuzzEscapeLineSeparators: the escaped entry holds no U+2028/U+2029,
// and a JSON entry stays JSON with the same value.
func FuzzEscapeLineSeparators(f *testing.F) {
	for _, seed := range []string{`{"a":"b"}`, "{\"a\":\"\u2028\"}", "\u2029", "\xe2\x80\xa8\xe2", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := escapeLineSeparators([]byte(in))
		if strings.ContainsAny(string(got), "\u0085\u2028\u2029") {
			t.Fatalf("%q still holds a line separator", got)
		}
		var before, after any
		if json.Unmarshal([]byte(in), &before) == nil {
			if err := json.Unmarshal(got, &after); err != nil || !reflect.DeepEqual(before, after) {
				t.Fatalf("JSON %q escaped to %q: %v", in, got, err)
			}
		}
	})
}

// TestFullDiskKeepsTheFileAndTheClock: when writes fail (a full disk),
// entries are counted and dropped without an error to the logger (zap
// printed each to stderr), the file is rolled at most once a second (a
// new file per dropped entry once moved the names a millisecond further
// into the future each), and the error is logged at most every 10 s.
func TestFullDiskKeepsTheFileAndTheClock(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, metricsFor(dir, "log:test"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.lock.Close()
	st := testSettings()
	sp.configure(st.rollSize, st.spoolMax, st.onFull)
	readOnly := func() { // the disk is full: the current file takes no more bytes
		t.Helper()
		sp.mu.Lock()
		defer sp.mu.Unlock()
		if sp.cur == nil {
			if err := sp.openLocked(time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		name := sp.cur.Name()
		sp.cur.Close()
		if sp.cur, err = os.Open(name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sp.Write([]byte(`{"msg":"before the disk filled"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	lost := metricValue(sp.metrics.writeErrors)
	entry := []byte(`{"msg":"dropped"}` + "\n")
	start := time.Now()
	for i := range 5000 {
		if i%500 == 0 {
			readOnly() // every file fails, as on a full disk
		}
		if n, err := sp.Write(entry); err != nil || n != len(entry) {
			t.Fatalf("Write = %d, %v; want the entry counted, not an error", n, err)
		}
	}
	rolls := int(time.Since(start)/errorRollEvery) + 1
	sp.mu.Lock()
	if sp.lastStamp.After(time.Now()) {
		t.Fatalf("last file stamped %v, in the future", sp.lastStamp)
	}
	sp.mu.Unlock()
	if files, _ := sp.stats(); files > rolls {
		t.Fatalf("%d files rolled in %v of failing writes, want at most %d", files, time.Since(start), rolls)
	}
	// Every entry is in the spool or counted as lost, none half-written.
	_, onDisk := sp.stats()
	first := int64(len(`{"msg":"before the disk filled"}` + "\n"))
	if got := metricValue(sp.metrics.writeErrors) - lost; got == 0 || int64(got)+onDisk-first != int64(5000*len(entry)) {
		t.Fatalf("write_error bytes %v and %d bytes in the spool, want %d in all", got, onDisk-first, 5000*len(entry))
	}
	logs := observeLogs(t)
	sh := &shipper{sl: &slot{dir: dir, spool: sp}}
	var writes writeErrorLog
	t0 := time.Now()
	for i := range 30 { // 30 ticks of 1 s with errors every second
		_, _ = sp.Write(entry)
		sh.reportSpoolProblems(&writes, t0.Add(time.Duration(i)*time.Second))
	}
	lines := logs.FilterMessageSnippet("writing the log spool failed").All()
	if len(lines) != 3 {
		t.Fatalf("%d error lines over 30 s of failures, want 3 (one per 10 s)", len(lines))
	}
	if n := lines[1].ContextMap()["entries_lost"]; n != int64(10) {
		t.Fatalf("second line counts %v lost entries, want 10", n)
	}
}
