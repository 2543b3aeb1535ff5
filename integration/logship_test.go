package integration

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// logshipSite ships the access log of a reverse proxy to a versitygw
// bucket. Requests are /seq/<node>/<n>, so the shipped lines tell which
// request they are.
const logshipSite = `{
	{{.Global}}
	asset_store logs s3 {
		bucket {{.X.bucket}}
		endpoint {{.X.endpoint}}
		region {{.X.region}}
		access_key {{.X.access_key}}
		secret_key {{.X.secret_key}}
		path_style
	}
}
:{{.HTTPPort}} {
	log {
		output s3 logs {
			prefix shipped
			host {{.X.host}}
			name access
			roll_size {{.X.roll_size}}
			roll_interval {{.X.roll_interval}}
			max_backoff 500ms
			flush_timeout 5s
		}
	}
	reverse_proxy {{.X.upstreams}}
}
`

// logshipEnv is a versitygw with a bucket and a demo backend.
type logshipEnv struct {
	s3        *testproc.S3Server
	bucket    string
	upstreams string
}

func startLogshipEnv(t *testing.T) *logshipEnv {
	t.Helper()
	s3 := testproc.StartVersityGW(t)
	return &logshipEnv{
		s3:        s3,
		bucket:    s3.CreateBucket(t, "logs"),
		upstreams: harness.Upstreams(harness.StartBackends(t, 1)),
	}
}

// startNode starts a Caddy that ships as host, rolling small files so a
// test sees many uploads.
func (e *logshipEnv) startNode(t *testing.T, host string) *harness.Caddy {
	t.Helper()
	return harness.StartCaddyWith(t, logshipSite, e.config(host, "4KiB", "500ms"))
}

func (e *logshipEnv) config(host, rollSize, rollInterval string) map[string]any {
	return map[string]any{
		"bucket": e.bucket, "endpoint": e.s3.Endpoint, "region": e.s3.Region,
		"access_key": e.s3.AccessKey, "secret_key": e.s3.SecretKey,
		"host": host, "upstreams": e.upstreams,
		"roll_size": rollSize, "roll_interval": rollInterval,
	}
}

// sendSeq sends GET /seq/<host>/<n> for n in [from, to), one at a time,
// and fails the test unless each is answered 200.
func sendSeq(t *testing.T, c *harness.Caddy, host string, from, to int) {
	t.Helper()
	if err := trySendSeq(c, host, from, to); err != nil {
		t.Fatal(err)
	}
}

// trySendSeq is sendSeq for other goroutines than the test's.
func trySendSeq(c *harness.Caddy, host string, from, to int) error {
	client := harness.NewClient()
	for n := from; n < to; n++ {
		resp, err := client.Get(c.URL(fmt.Sprintf("/seq/%s/%d", host, n)))
		if err != nil {
			return fmt.Errorf("%s request %d: %v", host, n, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s request %d: %s", host, n, resp.Status)
		}
	}
	return nil
}

var seqURI = regexp.MustCompile(`^/seq/([^/]+)/(\d+)$`)

// shippedObject is one object in the bucket: its key and the request
// numbers of its lines, by host.
type shippedObject struct {
	key  string
	seqs map[string][]int
}

// shipped lists the bucket under shipped/ in key order, checks that
// every object is gzipped JSON access log lines, and returns them.
func (e *logshipEnv) shipped(t *testing.T) []shippedObject {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := e.s3.Client(t)
	var objs []shippedObject
	for info := range client.ListObjects(ctx, e.bucket, minio.ListObjectsOptions{Prefix: "shipped/", Recursive: true}) {
		if info.Err != nil {
			t.Fatalf("listing the bucket: %v", info.Err)
		}
		obj, err := client.GetObject(ctx, e.bucket, info.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("GET %s: %v", info.Key, err)
		}
		objs = append(objs, shippedObject{key: info.Key, seqs: readShippedLog(t, info.Key, obj)})
		obj.Close()
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].key < objs[j].key })
	return objs
}

func readShippedLog(t *testing.T, key string, r io.Reader) map[string][]int {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatalf("object %s is not gzip: %v", key, err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("object %s: gunzip: %v", key, err)
	}
	seqs := map[string][]int{}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(body), "\n"), "\n") {
		var entry struct {
			Request struct{ URI string } `json:"request"`
			Status  int                  `json:"status"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("object %s: line %q is not a JSON access log entry: %v", key, line, err)
		}
		if m := seqURI.FindStringSubmatch(entry.Request.URI); m != nil {
			n, _ := strconv.Atoi(m[2])
			seqs[m[1]] = append(seqs[m[1]], n)
		}
	}
	return seqs
}

// keyPattern is the default key template with prefix "shipped" and name
// "access".
var keyPattern = regexp.MustCompile(`^shipped/([^/]+)/\d{4}/\d{2}/\d{2}/\d{2}/access-\d{8}T\d{6}\.\d{3}Z-[0-9a-f-]{36}\.log\.gz$`)

// seqsOf concatenates host's request numbers over the objects under
// its key prefix, in key order, checking every key's shape.
func seqsOf(t *testing.T, objs []shippedObject, host string) []int {
	t.Helper()
	var all []int
	for _, o := range objs {
		m := keyPattern.FindStringSubmatch(o.key)
		if m == nil {
			t.Fatalf("key %q does not follow the default template", o.key)
		}
		if m[1] != host {
			if len(o.seqs[host]) > 0 {
				t.Fatalf("object %s under host %s holds requests of %s", o.key, m[1], host)
			}
			continue
		}
		all = append(all, o.seqs[host]...)
	}
	return all
}

// waitShipped waits until host's requests 0..n-1 are all in the bucket
// and returns what was shipped for host, in key order.
func (e *logshipEnv) waitShipped(t *testing.T, host string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		seqs := seqsOf(t, e.shipped(t), host)
		if missing := missingSeqs(seqs, n); len(missing) == 0 {
			return seqs
		} else if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d requests never arrived in the bucket, e.g. %v", host, len(missing), n, missing[:min(len(missing), 10)])
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func missingSeqs(seqs []int, n int) []int {
	seen := make(map[int]bool, len(seqs))
	for _, s := range seqs {
		seen[s] = true
	}
	var missing []int
	for i := range n {
		if !seen[i] {
			missing = append(missing, i)
		}
	}
	return missing
}

// assertInOrderNoDuplicates fails unless seqs is 0..n-1 exactly once each,
// in order.
func assertInOrderNoDuplicates(t *testing.T, host string, seqs []int, n int) {
	t.Helper()
	if len(seqs) != n {
		t.Fatalf("%s: %d lines shipped for %d requests (duplicates)", host, len(seqs), n)
	}
	for i, s := range seqs {
		if s != i {
			t.Fatalf("%s: line %d in key order is request %d: order lost (%v...)", host, i, s, seqs[max(0, i-3):min(len(seqs), i+3)])
		}
	}
}

// metric reads one caddylb_logship series from the admin endpoint.
func metric(t *testing.T, c *harness.Caddy, name string) float64 {
	t.Helper()
	resp, err := http.Get(c.AdminURL("/metrics"))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

func TestLogshipRealRequestsArriveGzipped(t *testing.T) {
	e := startLogshipEnv(t)
	c := e.startNode(t, "node1")
	sendSeq(t, c, "node1", 0, 300)
	seqs := e.waitShipped(t, "node1", 300)
	assertInOrderNoDuplicates(t, "node1", seqs, 300)
	if files := metric(t, c, "caddylb_logship_shipped_files_total"); files < 2 {
		t.Fatalf("caddylb_logship_shipped_files_total = %v, want the uploads counted", files)
	}
	if strings.Contains(c.Log(), e.s3.SecretKey) {
		t.Fatal("Caddy's own log contains the store's secret key")
	}
}

func TestLogshipStoreDownThenBack(t *testing.T) {
	e := startLogshipEnv(t)
	c := e.startNode(t, "node1")
	sendSeq(t, c, "node1", 0, 100)
	e.waitShipped(t, "node1", 100)

	e.s3.Kill()
	sendSeq(t, c, "node1", 100, 400)
	deadline := time.Now().Add(20 * time.Second)
	for metric(t, c, "caddylb_logship_upload_failures_total") < 2 || metric(t, c, "caddylb_logship_pending_files") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("with the store down: failures %v, pending files %v; want both counted",
				metric(t, c, "caddylb_logship_upload_failures_total"), metric(t, c, "caddylb_logship_pending_files"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	e.s3.Restart(t)
	sendSeq(t, c, "node1", 400, 500)
	seqs := e.waitShipped(t, "node1", 500)
	assertInOrderNoDuplicates(t, "node1", seqs, 500)
	if dropped := metric(t, c, "caddylb_logship_dropped_bytes_total"); dropped != 0 {
		t.Fatalf("caddylb_logship_dropped_bytes_total = %v with a spool far from full", dropped)
	}
}

func TestLogshipKill9WhileSpoolingLosesNothing(t *testing.T) {
	e := startLogshipEnv(t)
	c := e.startNode(t, "node1")

	// Store down: rolled files pile up and the newest lines sit in the
	// file being written when Caddy is killed.
	e.s3.Kill()
	sendSeq(t, c, "node1", 0, 300)
	c.Kill()
	e.s3.Restart(t)
	c.Restart(t)

	// Store up: kill again while the uploader is busy.
	sendSeq(t, c, "node1", 300, 600)
	c.Kill()
	c.Restart(t)
	sendSeq(t, c, "node1", 600, 700)

	seqs := e.waitShipped(t, "node1", 700)
	// At least once, and keys are derived from spool file names, so a
	// repeated upload overwrites its object: no line twice.
	assertInOrderNoDuplicates(t, "node1", seqs, 700)
}

func TestLogshipFlushOnReloadAndShutdown(t *testing.T) {
	e := startLogshipEnv(t)
	// Files that never roll by themselves: only the reload and the
	// shutdown ship them.
	c := harness.StartCaddyWith(t, logshipSite, e.config("node1", "64MiB", "1h"))
	sendSeq(t, c, "node1", 0, 100)
	time.Sleep(time.Second)
	if seqs := seqsOf(t, e.shipped(t), "node1"); len(seqs) != 0 {
		t.Fatalf("%d lines shipped before any roll", len(seqs))
	}
	c.ReloadWith(t, logshipSite, e.config("node1", "32MiB", "1h"))
	e.waitShipped(t, "node1", 100)
	sendSeq(t, c, "node1", 100, 200)
	c.Stop()
	seqs := seqsOf(t, e.shipped(t), "node1")
	assertInOrderNoDuplicates(t, "node1", seqs, 200)
}

func TestLogshipTwoNodesOneBucket(t *testing.T) {
	e := startLogshipEnv(t)
	nodes := map[string]*harness.Caddy{"node1": e.startNode(t, "node1"), "node2": e.startNode(t, "node2")}
	errs := make(chan error)
	for host, c := range nodes {
		go func() { errs <- trySendSeq(c, host, 0, 300) }()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for host := range nodes {
		seqs := e.waitShipped(t, host, 300)
		assertInOrderNoDuplicates(t, host, seqs, 300)
	}
}

// logshipWithAssetsSites is a config in which asset handlers ask for the
// asset_store app while the http app is provisioned, before the app's own
// turn in some starts: in {{.X.order}} "assets-first" the asset site comes
// first in the file, in "log-first" the logging one.
const logshipWithAssetsSites = `{
	{{.Global}}
	asset_store shared file {{.X.root}} {
		public_url /media
	}
}
{{if eq .X.order "assets-first"}}:{{.X.assets_port}} {
	asset_serve /media/* {
		store shared
	}
}
{{end}}:{{.HTTPPort}} {
	log {
		output s3 shared {
			prefix shipped
			host node1
			roll_interval 1h
			flush_timeout 5s
		}
	}
	asset_serve /media/*
	respond "ok"
}
{{if eq .X.order "log-first"}}:{{.X.assets_port}} {
	asset_offload /upload {
		store shared
		sign_secret 0123456789abcdef0123
	}
	respond "ok"
}
{{end}}`

// TestLogshipShipsInEveryStartWithAssetHandlers starts the binary again
// and again with asset handlers in the config, in both orders, and
// checks that every start's requests are shipped at its shutdown: Caddy
// provisions its apps in map order, and the store hand-over once failed
// in about one start in eight, silently.
func TestLogshipShipsInEveryStartWithAssetHandlers(t *testing.T) {
	const startsPerOrder = 16
	for _, order := range []string{"assets-first", "log-first"} {
		t.Run(order, func(t *testing.T) {
			root := t.TempDir()
			c := harness.StartCaddyWith(t, logshipWithAssetsSites, map[string]any{
				"root": root, "order": order, "assets_port": testproc.FreePort(t),
			})
			var missing []int
			for i := range startsPerOrder {
				if i > 0 {
					c.Restart(t)
				}
				uri := fmt.Sprintf("/seq/%s/%d", order, i)
				resp, err := http.Get(c.URL(uri))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				c.Stop()
				if !fileStoreLogHas(t, root, uri) {
					missing = append(missing, i)
				}
			}
			if len(missing) > 0 {
				t.Fatalf("starts %v of %d shipped nothing by their shutdown\n%s", missing, startsPerOrder, c.Log())
			}
			if strings.Contains(c.Log(), "no store to ship to") {
				t.Fatalf("a start raised the missing-store alarm:\n%s", c.Log())
			}
		})
	}
}

// fileStoreLogHas reports whether a gzipped log object under root holds
// a request for uri.
func fileStoreLogHas(t *testing.T, root, uri string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == ".caddylb-meta" {
			return filepath.SkipDir // the file store's metadata, not objects
		}
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log.gz") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if strings.Contains(string(body), `"uri":"`+uri+`"`) {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// logshipFullDiskSite spools the access log where a file size limit
// makes every write past 64 KiB fail, as a full disk does.
const logshipFullDiskSite = `{
	{{.Global}}
	asset_store logs file {{.X.root}}
}
:{{.HTTPPort}} {
	log {
		output s3 logs {
			spool_dir {{.X.spool}}
			roll_size 16MiB
			roll_interval 1h
		}
	}
	respond "ok"
}
`

// TestLogshipFullDiskIsQuietAndKeepsItsClock: with the spool's disk full,
// every dropped entry once wrote a line to stderr (47,836 lines in 12 s)
// and opened a new spool file named a millisecond further into the
// future (36 s ahead after 12 s).
func TestLogshipFullDiskIsQuietAndKeepsItsClock(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "spool")
	// dash counts ulimit -f in 512-byte blocks: 64 KiB per file.
	limit := []string{"/bin/sh", "-c", `ulimit -f 128 && exec "$0" "$@"`}
	c := harness.StartCaddyUnder(t, limit, logshipFullDiskSite, map[string]any{"root": t.TempDir(), "spool": spool})
	client := harness.NewClient()
	start := time.Now()
	for i := range 3000 {
		resp, err := client.Get(c.URL(fmt.Sprintf("/seq/full/%d?pad=%s", i, strings.Repeat("x", 200))))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d with the spool's disk full: %v %v", i, resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := metric(t, c, `caddylb_logship_dropped_bytes_total{reason="write_error",source="log:caddy",spool="`+spool+`"}`); n == 0 {
		t.Fatal("no write errors counted: the limit did not bite")
	}
	var files []string
	entries, _ := os.ReadDir(spool)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log.open") || strings.HasSuffix(e.Name(), ".log") {
			files = append(files, e.Name())
			stamp, err := time.Parse("20060102T150405.000Z", e.Name()[:len("20060102T150405.000Z")])
			if err != nil || stamp.After(time.Now().Add(time.Second)) || stamp.Before(start.Add(-time.Minute)) {
				t.Errorf("spool file %s is named off the clock (%v)", e.Name(), err)
			}
		}
	}
	if limit := int(time.Since(start)/time.Second) + 2; len(files) > limit { // at most a roll a second
		t.Fatalf("%d spool files after %v of a full disk: %v", len(files), time.Since(start), files[:min(5, len(files))])
	}
	lines := strings.Count(c.Log(), "\n")
	if strings.Count(c.Log(), "write error") > 0 || lines > 200 {
		t.Fatalf("Caddy wrote %d lines (%d zap write errors) during a full disk", lines, strings.Count(c.Log(), "write error"))
	}
	deadline := time.Now().Add(5 * time.Second) // the shipper reports on its next tick
	for !strings.Contains(c.Log(), "writing the log spool failed") {
		if time.Now().After(deadline) {
			t.Fatal("the full disk was not reported at all")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
