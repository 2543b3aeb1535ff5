package testproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestVersityGWKillRestartKeepsData(t *testing.T) {
	s := StartVersityGW(t)
	bucket := s.CreateBucket(t, "restart")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client(t)
	body := []byte("kept across restarts")
	if _, err := c.PutObject(ctx, bucket, "a/b.txt", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	addr, pid := s.Addr, s.Pid()

	s.Kill()
	if _, err := c.StatObject(ctx, bucket, "a/b.txt", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat succeeded against a killed versitygw")
	}

	s.Restart(t)
	if s.Addr != addr || s.Pid() == pid {
		t.Fatalf("restart: addr %s pid %d, want addr %s and a new pid (old %d)", s.Addr, s.Pid(), addr, pid)
	}
	obj, err := c.GetObject(ctx, bucket, "a/b.txt", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("get after restart: %q, %v; want %q", got, err, body)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message instead
// of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestVersityGWMissingFailsWithMakeDeps(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty) // no versitygw, and no go to ask for GOPATH
	t.Setenv("GOPATH", empty)
	rec := &fatalRecorder{TB: t}
	if p := versitygwPath(rec); p != "" {
		t.Fatalf("found %q in an empty PATH and GOPATH", p)
	}
	if !strings.Contains(rec.msg, "make deps") || !strings.Contains(rec.msg, filepath.Join(empty, "bin", "versitygw")) {
		t.Fatalf("failure message %q should name `make deps` and the paths tried", rec.msg)
	}
}
