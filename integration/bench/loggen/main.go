// Command loggen writes the inputs of integration/bench/shiplogs.sh:
//
//	loggen file -size 512MiB -out app.log
//	    an application log: mostly plain-text lines (PHP/Laravel style),
//	    every tenth a JSON line
//	loggen objects -gzsize 1GiB -root <dir> -prefix prod/access -hosts 4
//	    shipped access logs as `output s3` leaves them in a file asset
//	    store: gzipped JSON lines under the default key template, ~16 MiB
//	    of lines per object, 2% of the requests 5xx
//
// The lines vary (times, IPs, URIs, sizes, user agents) so that they
// compress about as real logs do.
package main

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loggen file|objects [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	size := fs.String("size", "512MiB", "file: bytes of lines")
	out := fs.String("out", "app.log", "file: where")
	gzsize := fs.String("gzsize", "1GiB", "objects: gzipped bytes in all")
	root := fs.String("root", "", "objects: the file store's directory")
	prefix := fs.String("prefix", "prod/access", "objects: key prefix")
	hosts := fs.Int("hosts", 4, "objects: nodes")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "file":
		err = writeFile(*out, parseSize(*size))
	case "objects":
		err = writeObjects(*root, *prefix, *hosts, parseSize(*gzsize))
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loggen:", err)
		os.Exit(1)
	}
}

func parseSize(s string) int64 {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loggen:", err)
		os.Exit(2)
	}
	return int64(n)
}

var uris = []string{"/", "/cart", "/checkout", "/api/products", "/api/products/%d", "/search?q=item%d", "/static/app.%x.js", "/images/p%d.jpg", "/login", "/account/orders/%d"}
var agents = []string{"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", "curl/8.5.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"}

func uri(r *mrand.Rand) string {
	u := uris[r.IntN(len(uris))]
	if strings.Contains(u, "%") {
		u = fmt.Sprintf(u, r.IntN(100000))
	}
	return u
}

func appLine(r *mrand.Rand, t time.Time) string {
	if r.IntN(10) == 0 {
		return fmt.Sprintf(`{"message":"order placed","context":{"order_id":%d,"total":%d.%02d},"level":200,"level_name":"INFO","channel":"production","datetime":%q}`,
			r.IntN(1e7), r.IntN(500), r.IntN(100), t.Format(time.RFC3339Nano))
	}
	switch r.IntN(4) {
	case 0:
		return fmt.Sprintf("[%s] production.ERROR: SQLSTATE[HY000] [2002] Connection refused (SQL: select * from `users` where `id` = %d limit 1) {\"exception\":\"[object] (Illuminate\\\\Database\\\\QueryException(code: 2002))\"}", t.Format("2006-01-02 15:04:05"), r.IntN(1e6))
	case 1:
		return fmt.Sprintf("[%s] PHP Warning:  Undefined array key \"item_%d\" in /var/www/app/app/Http/Controllers/CartController.php on line %d", t.Format("02-Jan-2006 15:04:05 MST"), r.IntN(1000), r.IntN(400))
	default:
		return fmt.Sprintf("[%s] production.INFO: GET %s user=%d took %dms", t.Format("2006-01-02 15:04:05"), uri(r), r.IntN(1e6), r.IntN(900))
	}
}

func writeFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := mrand.New(mrand.NewPCG(1, 2))
	t := time.Now().Add(-time.Hour)
	var n int64
	for n < size {
		l := appLine(r, t)
		t = t.Add(time.Duration(r.IntN(2000)) * time.Microsecond)
		w.WriteString(l)
		w.WriteByte('\n')
		n += int64(len(l) + 1)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func accessLine(r *mrand.Rand, t time.Time, host string) string {
	status := 200
	switch x := r.IntN(100); {
	case x < 2:
		status = 500 + r.IntN(4)
	case x < 7:
		status = 404
	case x < 12:
		status = 304
	}
	return fmt.Sprintf(`{"level":"info","ts":%d.%06d,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"10.0.%d.%d","remote_port":"%d","client_ip":"203.0.%d.%d","proto":"HTTP/2.0","method":"GET","host":"shop.example.com","uri":%q,"headers":{"User-Agent":[%q],"Accept-Encoding":["gzip, br"],"Cookie":["REDACTED"]},"tls":{"resumed":false,"version":772,"cipher_suite":4865,"proto":"h2","server_name":"shop.example.com"}},"bytes_read":0,"user_id":"","duration":0.%06d,"size":%d,"status":%d,"resp_headers":{"Server":["Caddy"],"Content-Type":["text/html; charset=utf-8"]},"sticky_upstream":"10.0.1.%d:8080","sticky_outcome":"hit","node":%q}`,
		t.Unix(), t.Nanosecond()/1000, r.IntN(256), r.IntN(256), 1024+r.IntN(60000), r.IntN(256), r.IntN(256), uri(r), agents[r.IntN(len(agents))],
		r.IntN(300000), r.IntN(200000), status, 1+r.IntN(4), host)
}

// writeObjects writes gzipped objects until their total reaches gzsize,
// hosts in parallel, each host's objects one after another in time.
func writeObjects(root, prefix string, hosts int, gzsize int64) error {
	var written atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, hosts)
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	for h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := fmt.Sprintf("lb-%d", h+1)
			r := mrand.New(mrand.NewPCG(uint64(h), 7))
			t := start.Add(time.Duration(h) * time.Millisecond)
			for written.Load() < gzsize {
				objStart := t
				key := fmt.Sprintf("%s/%s/%s/access-%s-%s.log.gz", prefix, host, objStart.Format("2006/01/02/15"), objStart.Format("20060102T150405.000Z"), objectstore.NewUUID())
				path := filepath.Join(root, filepath.FromSlash(key))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					errs <- err
					return
				}
				f, err := os.Create(path)
				if err != nil {
					errs <- err
					return
				}
				zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
				bw := bufio.NewWriterSize(zw, 1<<20)
				for raw := 0; raw < 16<<20; {
					l := accessLine(r, t, host)
					t = t.Add(time.Duration(200+r.IntN(1600)) * time.Microsecond)
					bw.WriteString(l)
					bw.WriteByte('\n')
					raw += len(l) + 1
				}
				bw.Flush()
				zw.Close()
				fi, _ := f.Stat()
				f.Close()
				written.Add(fi.Size())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}
