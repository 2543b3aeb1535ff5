package testproc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
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
	// CAFile is the PEM of the certificate it serves, for StartVersityGWTLS
	// ("" for plain http).
	CAFile string

	tlsConfig *tls.Config // trusts CAFile
}

// versitygwVersion is what `make deps` installs.
const versitygwVersion = "v1.8.0"

// StartVersityGW starts versitygw with the posix backend on a free
// loopback port, with fresh IAM and data directories and random root
// credentials, and waits until it answers S3 requests. A missing binary
// fails the test: `make deps` installs it.
func StartVersityGW(t testing.TB) *S3Server {
	t.Helper()
	return startVersityGW(t, false)
}

// StartVersityGWTLS is StartVersityGW serving https with a self-signed
// certificate for 127.0.0.1, written to CAFile: production S3 endpoints
// are https, where clients send unsigned payloads that TLS protects.
func StartVersityGWTLS(t testing.TB) *S3Server {
	t.Helper()
	return startVersityGW(t, true)
}

func startVersityGW(t testing.TB, withTLS bool) *S3Server {
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
	var tlsArgs []string
	scheme := "http://"
	var tlsConfig *tls.Config
	if withTLS {
		certFile, keyFile := selfSignedCert(t, dir)
		tlsArgs = []string{"--cert", certFile, "--key", keyFile}
		scheme = "https://"
		pem, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s := &S3Server{
		tlsConfig: tlsConfig,
		Endpoint:  scheme + addr,
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
		Args: append(append([]string{"--port", addr, "--region", s.Region, "--iam-dir", iamDir}, tlsArgs...), "posix", dataDir),
		Env:  []string{"ROOT_ACCESS_KEY=" + s.AccessKey, "ROOT_SECRET_KEY=" + s.SecretKey},
		Addr: addr,
		// Any HTTP answer from the gateway (403 to an anonymous GET /)
		// means the S3 API serves.
		Ready: func() error { return pingVersityGW(s.Endpoint, tlsConfig) },
	})
	if withTLS {
		s.CAFile = filepath.Join(dir, "cert.pem")
	}
	return s
}

// selfSignedCert writes an ECDSA certificate for 127.0.0.1 and its key
// into dir.
func selfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "versitygw test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Client is a minio-go client for the server with the root credentials
// and path-style bucket addressing.
func (s *S3Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	opts := &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
	}
	if s.tlsConfig != nil {
		tr, err := minio.DefaultTransport(true)
		if err != nil {
			t.Fatal(err)
		}
		tr.TLSClientConfig = s.tlsConfig
		opts.Secure, opts.Transport = true, tr
	}
	host := strings.TrimPrefix(strings.TrimPrefix(s.Endpoint, "http://"), "https://")
	c, err := minio.New(host, opts)
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

// HTTPClient is a client for the server's own URLs (presigned ones):
// with StartVersityGWTLS it trusts the server's certificate.
func (s *S3Server) HTTPClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: s.tlsConfig}}
}

// pingVersityGW answers nil if addr answers HTTP as versitygw does.
func pingVersityGW(endpoint string, tlsConfig *tls.Config) error {
	client := http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	resp, err := client.Get(endpoint + "/")
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
