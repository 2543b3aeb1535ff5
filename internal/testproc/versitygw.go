package testproc

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Server is a versitygw (S3 gateway over a POSIX directory) started by
// StartVersityGW. Kill and Restart (from Proc) keep the port, the
// credentials and the data directory, so objects and unfinished multipart
// uploads survive a restart.
type S3Server struct {
	*Proc

	// Endpoint is the S3 URL, "http://127.0.0.1:<port>".
	Endpoint string
	// AccessKey and SecretKey are the root user's credentials.
	AccessKey, SecretKey string
	// Region is the region versitygw signs for ("us-east-1").
	Region string
	// DataDir is the gateway's root: each top-level directory is a bucket.
	DataDir string
}

// versitygwVersion is what `make deps` installs.
const versitygwVersion = "v1.8.0"

// StartVersityGW starts versitygw with the posix backend on a free
// loopback port, with fresh IAM and data directories and random root
// credentials, and waits until it answers S3 requests. A missing binary
// fails the test: `make deps` installs it.
func StartVersityGW(t testing.TB) *S3Server {
	t.Helper()
	bin := versitygwPath(t)
	addr := FreeAddr(t)
	dir := t.TempDir()
	iamDir, dataDir := filepath.Join(dir, "iam"), filepath.Join(dir, "data")
	for _, d := range []string{iamDir, dataDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatalf("versitygw: %v", err)
		}
	}
	s := &S3Server{
		Endpoint:  "http://" + addr,
		AccessKey: "testroot" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10),
		SecretKey: "testsecret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Region:    "us-east-1",
		DataDir:   dataDir,
	}
	s.Proc = Start(t, Spec{
		Name: "versitygw",
		Path: bin,
		// Global flags go before the backend name. Paths must be absolute:
		// versitygw resolves them against another directory.
		Args: []string{"--port", addr, "--region", s.Region, "--iam-dir", iamDir, "posix", dataDir},
		Env:  []string{"ROOT_ACCESS_KEY=" + s.AccessKey, "ROOT_SECRET_KEY=" + s.SecretKey},
		Addr: addr,
		// Any HTTP answer from the gateway (403 to an anonymous GET /)
		// means the S3 API serves.
		Ready: func() error { return pingVersityGW(addr) },
	})
	return s
}

// Client is a minio-go client for the server with the root credentials
// and path-style bucket addressing.
func (s *S3Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
	})
	if err != nil {
		t.Fatalf("versitygw client: %v", err)
	}
	return c
}

// CreateBucket creates bucket through the S3 API (so the gateway records
// its owner) and returns its name.
func (s *S3Server) CreateBucket(t testing.TB, bucket string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("versitygw: creating bucket %q: %v", bucket, err)
	}
	return bucket
}

// pingVersityGW answers nil if addr answers HTTP as versitygw does.
func pingVersityGW(addr string) error {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if srv := resp.Header.Get("Server"); !strings.EqualFold(srv, "VERSITYGW") {
		return fmt.Errorf("GET / answered %s from server %q, not versitygw", resp.Status, srv)
	}
	return nil
}

// versitygwPath finds versitygw on PATH, then in $(go env GOPATH)/bin,
// where `go install` puts it; it fails the test if neither has it.
func versitygwPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	var tried []string
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, "versitygw")
		tried = append(tried, p)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("versitygw is not on PATH nor at %s: run `make deps` (go install github.com/versity/versitygw/cmd/versitygw@%s)",
		strings.Join(tried, ", "), versitygwVersion)
	return ""
}

// goBinDirs lists where `go install` puts binaries: $GOBIN, then the bin
// directory of each GOPATH entry.
func goBinDirs() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOBIN", "GOPATH").Output()
	var gobin, gopath string
	if err == nil {
		// One line per variable; GOBIN's is empty when unset.
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(lines) == 2 {
			gobin, gopath = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
		}
	}
	if gopath == "" {
		gopath = os.Getenv("GOPATH")
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	var dirs []string
	if gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, p := range filepath.SplitList(gopath) {
		if p != "" {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return dirs
}
