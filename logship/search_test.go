package logship

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
	"github.com/caddylb/caddylb/logship/logquery"
)

// listRecorder is a file store that records the prefixes listed.
type listRecorder struct {
	*objectstore.FileStore
	mu       sync.Mutex
	prefixes []string
}

func (r *listRecorder) List(ctx context.Context, prefix string, fn func(objectstore.ObjectInfo) error) error {
	r.mu.Lock()
	r.prefixes = append(r.prefixes, prefix)
	r.mu.Unlock()
	return r.FileStore.List(ctx, prefix, fn)
}

func newSearchStore(t *testing.T) *listRecorder {
	t.Helper()
	fs := &objectstore.FileStore{Root: t.TempDir()}
	if err := fs.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return &listRecorder{FileStore: fs}
}

// shipObject stores lines as one shipped file of host, started at start.
func shipObject(t *testing.T, store objectstore.Store, prefix, host, name string, start time.Time, lines ...string) string {
	t.Helper()
	tmpl, err := parseKeyTemplate(DefaultKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tmpl.render(keyValues{Prefix: prefix, Host: host, Name: name, UUID: objectstore.NewUUID(), Time: start})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, l := range lines {
		fmt.Fprintln(zw, l)
	}
	zw.Close()
	putRaw(t, store, key, buf.Bytes())
	return key
}

func putRaw(t *testing.T, store objectstore.Store, key string, data []byte) {
	t.Helper()
	if _, err := store.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), objectstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func accessLine(ts time.Time, status int, uri string) string {
	return fmt.Sprintf(`{"level":"info","ts":%d.%06d,"logger":"http.log.access","msg":"handled request","request":{"client_ip":"10.0.0.9","method":"GET","host":"shop.example.com","uri":%q},"duration":0.0015,"status":%d}`,
		ts.Unix(), ts.Nanosecond()/1000, uri, status)
}

func search(t *testing.T, store objectstore.Store, opts SearchOptions) (out, errOut string, stats SearchStats) {
	t.Helper()
	var o, e bytes.Buffer
	stats, err := Search(context.Background(), store, opts, &o, &e)
	if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), stats
}

func uris(out string) []string {
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if v, ok := logquery.Lookup([]byte(l), []string{"request", "uri"}); ok {
			got = append(got, v.String())
		}
	}
	return got
}

func TestSearchMergesNodesInTimeOrder(t *testing.T) {
	store := newSearchStore(t)
	base := time.Date(2026, 12, 1, 6, 58, 0, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	// lb-1's first file started before the window and runs into it; an
	// hour boundary (07:00) lies between its files.
	shipObject(t, store, "prod/access", "lb-1", "access", at(-30), accessLine(at(-20), 200, "/old"), accessLine(at(1), 200, "/a1"), accessLine(at(4), 503, "/a4"))
	shipObject(t, store, "prod/access", "lb-1", "access", at(150), accessLine(at(151), 200, "/a151"), accessLine(at(160), 500, "/a160"))
	shipObject(t, store, "prod/access", "lb-2", "access", at(2), accessLine(at(2), 200, "/b2"), accessLine(at(3), 502, "/b3"), accessLine(at(155), 200, "/b155"))
	shipObject(t, store, "prod/access", "lb-2", "access", at(-4000), accessLine(at(-3999), 200, "/ancient"))
	shipObject(t, store, "other/prefix", "lb-1", "access", at(5), accessLine(at(5), 200, "/elsewhere"))

	opts := SearchOptions{Prefix: "prod/access", Since: at(0), Until: at(200)}
	out, errOut, _ := search(t, store, opts)
	if want := "[/a1 /b2 /b3 /a4 /a151 /b155 /a160]"; fmt.Sprint(uris(out)) != want || errOut != "" {
		t.Fatalf("merged %v (stderr %q), want %s", uris(out), errOut, want)
	}
	for _, p := range store.prefixes {
		if !strings.HasPrefix(p, "prod/access/lb-") || strings.Count(p, "/") < 6 {
			t.Errorf("listed %q: want only the hours of the window of each node", p)
		}
	}

	opts.Where = logquery.Conds{must(logquery.ParseWhere("status>=500"))}
	out, _, _ = search(t, store, opts)
	if want := "[/b3 /a4 /a160]"; fmt.Sprint(uris(out)) != want {
		t.Errorf("status>=500 gave %v, want %s", uris(out), want)
	}
	opts.Hosts = []string{"lb-2"}
	out, _, _ = search(t, store, opts)
	if want := "[/b3]"; fmt.Sprint(uris(out)) != want {
		t.Errorf("--host lb-2 status>=500 gave %v, want %s", uris(out), want)
	}
	opts = SearchOptions{Prefix: "prod/access", Since: at(0), Until: at(3), Format: "text"}
	out, _, _ = search(t, store, opts)
	want := "2026-12-01T06:58:01.000Z lb-1 200 GET shop.example.com/a1 1.5ms 10.0.0.9\n" +
		"2026-12-01T06:58:02.000Z lb-2 200 GET shop.example.com/b2 1.5ms 10.0.0.9\n" +
		"2026-12-01T06:58:03.000Z lb-2 502 GET shop.example.com/b3 1.5ms 10.0.0.9\n"
	if out != want {
		t.Errorf("text format:\n%s\nwant:\n%s", out, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestSearchSkipsCorruptObjects(t *testing.T) {
	store := newSearchStore(t)
	now := time.Now().UTC().Add(-time.Minute)
	shipObject(t, store, "logs", "n1", "app", now, accessLine(now, 200, "/good1"))
	bad := shipObject(t, store, "logs", "n2", "app", now, "")
	putRaw(t, store, bad, []byte("this is not gzip"))
	// A gzip cut short: the lines before the cut are kept.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	fmt.Fprintln(zw, accessLine(now.Add(time.Second), 200, "/before-the-cut"))
	fmt.Fprintln(zw, strings.Repeat("x", 5000))
	zw.Close()
	cut := shipObject(t, store, "logs", "n3", "app", now, "")
	putRaw(t, store, cut, buf.Bytes()[:buf.Len()-20])
	shipObject(t, store, "logs", "n4", "app", now, accessLine(now.Add(2*time.Second), 200, "/good2"))

	out, errOut, stats := search(t, store, SearchOptions{Prefix: "logs", Since: now.Add(-time.Minute)})
	if want := "[/good1 /before-the-cut /good2]"; fmt.Sprint(uris(out)) != want {
		t.Errorf("printed %v, want %s", uris(out), want)
	}
	if !strings.Contains(errOut, bad) || !strings.Contains(errOut, "not gzip") || !strings.Contains(errOut, cut) || stats.Skipped != 2 {
		t.Errorf("stderr %q, skipped %d: want both bad objects named with their problem", errOut, stats.Skipped)
	}
}

func TestSearchFollowPrintsWhatIsShippedNext(t *testing.T) {
	store := newSearchStore(t)
	now := time.Now().UTC()
	shipObject(t, store, "logs", "n1", "app", now.Add(-time.Minute), accessLine(now.Add(-time.Minute), 200, "/before"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := Search(ctx, store, SearchOptions{Prefix: "logs", Since: now.Add(-time.Hour), Follow: true, FollowEvery: 50 * time.Millisecond}, out, out)
		done <- err
	}()
	waitFor(t, "the first line", func() bool { return strings.Contains(out.String(), "/before") })
	later := time.Now().UTC()
	shipObject(t, store, "logs", "n2", "app", later, accessLine(later, 200, "/after"))
	waitFor(t, "the line shipped after the search started", func() bool { return strings.Contains(out.String(), "/after") })
	time.Sleep(200 * time.Millisecond) // a few more rounds: nothing twice
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(uris(out.String())) != "[/before /after]" {
		t.Errorf("followed %v, want each line once", uris(out.String()))
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestKeyLayout(t *testing.T) {
	l, err := newKeyLayout(DefaultKey, "prod/access")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := l.parse("prod/access/lb-1/2026/12/01/07/access-20261201T071346.590Z-94129986-d20c-4f48-a5d0-f4d79c0b6b05.log.gz")
	if !ok || o.host != "lb-1" || o.name != "access" || !o.start.Equal(time.Date(2026, 12, 1, 7, 13, 46, 590e6, time.UTC)) {
		t.Errorf("parsed %+v", o)
	}
	for _, key := range []string{"prod/access/lb-1/2026/12/01/07/notes.txt", "prod/other/lb-1/2026/12/01/07/access-20261201T071346.590Z-94129986-d20c-4f48-a5d0-f4d79c0b6b05.log.gz"} {
		if _, ok := l.parse(key); ok {
			t.Errorf("%q parsed as a shipped file", key)
		}
	}
	if !l.hostSeg {
		t.Error("{host} is a whole segment of the default key")
	}
	from := time.Date(2026, 11, 30, 22, 30, 0, 0, time.UTC)
	to := time.Date(2026, 12, 2, 1, 10, 0, 0, time.UTC)
	got, err := l.windowPrefixes(context.Background(), nil, []string{"lb-1"}, "", from, to)
	if err != nil {
		t.Fatal(err)
	}
	want := "[prod/access/lb-1/2026/11/30/22/ prod/access/lb-1/2026/11/30/23/ prod/access/lb-1/2026/12/01/ prod/access/lb-1/2026/12/02/00/ prod/access/lb-1/2026/12/02/01/]"
	if fmt.Sprint(got) != want {
		t.Errorf("prefixes %v\nwant %s", got, want)
	}
	// An empty prefix drops its segment, as the writers' keys do.
	l, _ = newKeyLayout(DefaultKey, "")
	if _, ok := l.parse("lb-1/2026/12/01/07/access-20261201T071346.590Z-94129986-d20c-4f48-a5d0-f4d79c0b6b05.log.gz"); !ok {
		t.Error("a key without prefix was not parsed")
	}
	if _, err := newKeyLayout("{prefix}/{host}.log", "p"); err == nil {
		t.Error("a template without {ts} and {uuid} was accepted")
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                   now.Add(-time.Hour),
		"2d":                   now.Add(-48 * time.Hour),
		"2026-12-01T07:00:00Z": time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC),
		"2026-12-01 07:30":     time.Date(2026, 12, 1, 7, 30, 0, 0, time.UTC),
		"2026-12-01":           time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-1h", "2026-13-01"} {
		if _, err := parseWhen(in, now); err == nil {
			t.Errorf("parseWhen(%q) accepted", in)
		}
	}
}

// TestSearchIgnoresStrangeDirectories: a directory under the prefix
// that no writer made (a name that is not a valid key segment) does not
// fail the search, and an empty prefix lists nothing.
func TestSearchIgnoresStrangeDirectories(t *testing.T) {
	store := newSearchStore(t)
	now := time.Now().UTC().Add(-time.Minute)
	shipObject(t, store, "logs", "n1", "app", now, accessLine(now, 200, "/ok"))
	for _, dir := range []string{"logs/bad\x01host", "logs/ spaced"} {
		if err := os.MkdirAll(filepath.Join(store.Root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, _ := search(t, store, SearchOptions{Prefix: "logs", Since: now.Add(-time.Minute)})
	if fmt.Sprint(uris(out)) != "[/ok]" || errOut != "" {
		t.Errorf("printed %v (stderr %q), want the one line", uris(out), errOut)
	}
	out, _, _ = search(t, store, SearchOptions{Prefix: "nothing/here", Since: now.Add(-time.Minute)})
	if out != "" {
		t.Errorf("an empty prefix printed %q", out)
	}
}

// FuzzKeyLayoutParse: any listed key either parses into a host, a name
// and a start that render back to a key of the same layout, or is
// ignored; never a panic.
func FuzzKeyLayoutParse(f *testing.F) {
	f.Add("prod/access/lb-1/2026/12/01/07/access-20261201T071346.590Z-94129986-d20c-4f48-a5d0-f4d79c0b6b05.log.gz")
	f.Add("prod/access/../2026/12/01/07/x-20261201T071346.590Z-94129986-d20c-4f48-a5d0-f4d79c0b6b05.log.gz")
	f.Add("prod/access/lb-1/2026/13/41/99/access-20261341T991346.590Z-94129986-d20c-4f48-a5d0-f4d79c0b6b05.log.gz")
	l, err := newKeyLayout(DefaultKey, "prod/access")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string) {
		o, ok := l.parse(key)
		if !ok {
			return
		}
		if o.key != key || o.host == "" || o.name == "" || o.start.IsZero() || strings.Contains(o.host, "/") {
			t.Fatalf("parsed %q as %+v", key, o)
		}
	})
}
