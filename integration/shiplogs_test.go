package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
)

// shipLogsSite is a web server's caddy-lb: it ships the files of one
// directory to a file asset store. The site only gives the harness a
// port to wait for.
const shipLogsSite = `{
	{{.Global}}
	asset_store logs file {{.X.store}}
	ship_logs {
		store logs
		files {{.X.glob}}
		name app
		host web-1
		prefix apps
		roll_interval 300ms
		max_line 1KiB
		max_backoff 200ms
	}
}
:{{.HTTPPort}} {
	respond "web server"
}
`

// logWriterScript is an application writing its log: it keeps the file
// open (O_APPEND), reopens it on SIGHUP as logrotate's postrotate asks,
// writes plain lines, a JSON line every 97th, a line longer than
// max_line every 500th, until the stop file appears, then writes how
// many lines it wrote.
const logWriterScript = `
f="$1"; stop="$2"; out="$3"
exec 3>>"$f"
trap 'exec 3>>"$f"' HUP
i=0
pad=$(printf '%0100d' 0)
long=$(printf 'L%.0s' $(seq 3000))
while [ ! -e "$stop" ] && [ $i -lt 300000 ]; do
	i=$((i+1))
	if (( i % 97 == 0 )); then echo "{\"seq\":$i,\"msg\":\"json line\"}" >&3
	elif (( i % 500 == 0 )); then echo "seq=$i $long" >&3
	else echo "seq=$i $pad" >&3; fi
	if (( i % 200 == 0 )); then sleep 0.01; fi
done
echo $i > "$out"
`

// TestShipLogsEveryLineOnceThroughRotationAndKills writes a log file
// while logrotate's two ways rotate it (rename + create, copytruncate)
// and while the shipper is killed -9 and restarted, also with a rotation
// while it is down: every line must reach the store exactly once, the
// long ones split and whole again when joined.
func TestShipLogsEveryLineOnceThroughRotationAndKills(t *testing.T) {
	logs, store := t.TempDir(), t.TempDir()
	path := filepath.Join(logs, "app.log")
	c := harness.StartCaddyWith(t, shipLogsSite, map[string]any{"store": store, "glob": filepath.Join(logs, "*.log")})

	stop, countFile := filepath.Join(t.TempDir(), "stop"), filepath.Join(t.TempDir(), "count")
	writer := exec.Command("bash", "-c", logWriterScript, "writer", path, stop, countFile)
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- writer.Wait() }()
	t.Cleanup(func() { _ = writer.Process.Kill() })
	step := func(what string, f func()) {
		time.Sleep(400 * time.Millisecond)
		t.Log(what)
		f()
	}
	rename := func(to string) {
		if err := os.Rename(path, filepath.Join(logs, to)); err != nil {
			t.Fatal(err)
		}
		_ = writer.Process.Signal(syscall.SIGHUP)
	}
	step("rename + create", func() { rename("app.log.1") })
	step("kill -9 and restart", func() { c.Kill(); time.Sleep(200 * time.Millisecond); c.Restart(t) })
	step("copytruncate", func() {
		// The application is paused for the copy and the truncation, so
		// that nothing is written between them (lines written there are
		// lost to every reader: logrotate's own warning).
		_ = writer.Process.Signal(syscall.SIGSTOP)
		data, err := os.ReadFile(path)
		if err == nil {
			err = os.WriteFile(filepath.Join(logs, "app.log.2"), data, 0o644)
		}
		if err == nil {
			err = os.Truncate(path, 0)
		}
		_ = writer.Process.Signal(syscall.SIGCONT)
		if err != nil {
			t.Fatal(err)
		}
	})
	step("kill -9, rename + create while down, restart", func() {
		c.Kill()
		rename("app.log.3")
		time.Sleep(300 * time.Millisecond)
		c.Restart(t)
	})
	step("kill -9 and restart", func() { c.Kill(); c.Restart(t) })
	step("stop writing", func() {
		if err := os.WriteFile(stop, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("log writer: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the log writer did not stop")
	}
	raw, err := os.ReadFile(countFile)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if n < 2000 {
		t.Fatalf("the writer wrote only %d lines: the rotations and kills did not happen while it wrote", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts := shippedSeqs(t, store)
		if len(counts) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	c.Stop() // flushes what is left
	counts := shippedSeqs(t, store)
	var missing, twice []int
	for i := 1; i <= n; i++ {
		switch counts[i] {
		case 0:
			missing = append(missing, i)
		case 1:
		default:
			twice = append(twice, i)
		}
	}
	if len(missing) > 0 || len(twice) > 0 || len(counts) != n {
		t.Fatalf("%d lines written; %d missing (e.g. %v), %d shipped more than once (e.g. %v), %d distinct shipped\n%s",
			n, len(missing), missing[:min(10, len(missing))], len(twice), twice[:min(10, len(twice))], len(counts), c.Log())
	}
	t.Logf("%d lines, each shipped once", n)
}

var seqText = regexp.MustCompile(`^seq=(\d+) (0+|L+)$`)

// shippedSeqs reads every object of the file store and counts each
// line's sequence number; split lines are joined first, and a line that
// is not whole fails the test.
func shippedSeqs(t *testing.T, root string) map[int]int {
	t.Helper()
	var keys []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log.gz") && !strings.Contains(p, "/.caddylb-") {
			keys = append(keys, p)
		}
		return nil
	})
	sort.Strings(keys) // one host, one name: key order is shipping order
	counts := map[int]int{}
	var piece strings.Builder
	for _, k := range keys {
		f, err := os.Open(k)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec struct {
				Seq  int    `json:"seq"`
				Line string `json:"line"`
				File string `json:"file"`
				Host string `json:"host"`
				Part int    `json:"part"`
				More bool   `json:"more"`
			}
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("%s: record %q: %v", k, sc.Text(), err)
			}
			if rec.Seq > 0 {
				counts[rec.Seq]++
				continue
			}
			if rec.Host != "web-1" || !strings.HasPrefix(rec.File, filepath.Dir(root)) && !strings.HasSuffix(rec.File, ".log") {
				t.Fatalf("%s: record %q: want host web-1 and the file", k, sc.Text())
			}
			text := rec.Line
			if rec.Part > 0 {
				if len(rec.Line) > 1024 {
					t.Fatalf("%s: a piece of %d bytes, max_line is 1KiB", k, len(rec.Line))
				}
				piece.WriteString(rec.Line)
				if rec.More {
					continue
				}
				text = piece.String()
				piece.Reset()
			}
			m := seqText.FindStringSubmatch(text)
			if m == nil || len(m[2]) != 100 && len(m[2]) != 3000 {
				t.Fatalf("%s: line %.80q... is not one whole line of the writer", k, text)
			}
			seq, _ := strconv.Atoi(m[1])
			counts[seq]++
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		f.Close()
	}
	return counts
}

// lbLogsSite is a load balancer node shipping its access log to a
// versitygw bucket.
const lbLogsSite = `{
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
			prefix prod/access
			host {{.X.host}}
			name access
			roll_interval 300ms
			max_backoff 200ms
		}
	}
	reverse_proxy {{.X.upstreams}}
}
`

// TestLBLogsSearchAcrossNodes: two nodes ship their access logs to one
// bucket; `caddy lb-logs search` prints every request of both in time
// order, --where 'status>=500' exactly the errors, and --follow a
// request made after it started.
func TestLBLogsSearchAcrossNodes(t *testing.T) {
	env := startLogshipEnv(t)
	data := func(host string) map[string]any {
		d := env.config(host, "1MiB", "300ms")
		d["host"] = host
		return d
	}
	nodes := []*harness.Caddy{harness.StartCaddyWith(t, lbLogsSite, data("lb-1")), harness.StartCaddyWith(t, lbLogsSite, data("lb-2"))}
	client := harness.NewClient()
	var want, wantErrors []string
	for i := range 40 {
		node := nodes[i%2]
		code := 200
		if i%7 == 3 {
			code = 500 + i%4
		}
		uri := fmt.Sprintf("/status?code=%d&n=%d", code, i)
		resp, err := client.Get(node.URL(uri))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Fatalf("%s: %d", uri, resp.StatusCode)
		}
		want = append(want, uri)
		if code >= 500 {
			wantErrors = append(wantErrors, uri)
		}
		time.Sleep(5 * time.Millisecond) // distinct timestamps across the nodes
	}
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{
	asset_store logs s3 {
		bucket %s
		endpoint %s
		region %s
		access_key %s
		secret_key %s
		path_style
	}
}
`, env.bucket, env.s3.Endpoint, env.s3.Region, env.s3.AccessKey, env.s3.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	search := func(args ...string) (uris []string, stderr string) {
		t.Helper()
		cmd := exec.Command(harness.CaddyBinary(t), append([]string{"lb-logs", "search", "--config", cfg, "--prefix", "prod/access", "--since", "10m"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("lb-logs search %v: %v\n%s", args, err, errb.String())
		}
		return accessURIs(t, out.Bytes()), errb.String()
	}
	deadline := time.Now().Add(20 * time.Second)
	var got []string
	for {
		got, _ = search()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lb-logs search printed\n%v\nwant every request of both nodes in time order\n%v", got, want)
	}
	if got, _ := search("--where", "status>=500"); fmt.Sprint(got) != fmt.Sprint(wantErrors) {
		t.Errorf("--where status>=500 printed %v, want %v", got, wantErrors)
	}
	if got, _ := search("--where", "status>=500", "--host", "lb-2"); len(got) == 0 || len(got) >= len(wantErrors) {
		t.Errorf("--host lb-2 printed %v: want only lb-2's errors", got)
	}
	text, err := exec.Command(harness.CaddyBinary(t), "lb-logs", "search", "--config", cfg, "--prefix", "prod/access", "--format", "text", "--where", "request.uri~n=3").Output()
	if err != nil || !regexp.MustCompile(`(?m)^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z lb-2 503 GET 127\.0\.0\.1:\d+/status\?code=503&n=3 \d`).Match(text) {
		t.Errorf("--format text printed %q (%v)", text, err)
	}

	// --follow: a request made after the search started is printed.
	// --since a time: the requests above (a few milliseconds ago) are
	// before it.
	time.Sleep(50 * time.Millisecond)
	since := time.Now().UTC().Format(time.RFC3339Nano)
	follow := exec.Command(harness.CaddyBinary(t), "lb-logs", "search", "--config", cfg, "--prefix", "prod/access", "--since", since, "--follow")
	var fout bytes.Buffer
	follow.Stdout = &lockedWriter{w: &fout}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = follow.Process.Kill(); _ = follow.Wait() })
	time.Sleep(time.Second)
	resp, err := client.Get(nodes[1].URL("/status?code=200&n=after"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(follow.Stdout.(*lockedWriter).String(), "n=after") {
		if time.Now().After(deadline) {
			t.Fatalf("--follow never printed the request made after it started; it printed %q", follow.Stdout.(*lockedWriter).String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = follow.Process.Signal(os.Interrupt)
	if err := follow.Wait(); err != nil {
		t.Errorf("--follow interrupted: %v (want exit status 0)", err)
	}
	if got := accessURIs(t, fout.Bytes()); fmt.Sprint(got) != "[/status?code=200&n=after]" {
		t.Errorf("--follow --since <now> printed %v, want only the new request, once", got)
	}
}

// lockedWriter is a buffer a child process writes to while the test
// reads it.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// accessURIs returns the request URIs of JSON access log lines.
func accessURIs(t *testing.T, out []byte) []string {
	t.Helper()
	var uris []string
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e struct {
			Request struct{ URI string } `json:"request"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		uris = append(uris, e.Request.URI)
	}
	return uris
}
