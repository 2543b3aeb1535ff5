package objectstore

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/semaphore"
)

// s3Clients holds one minio client per distinct connection settings, so a
// config reload that keeps a store's settings keeps its connections.
var s3Clients = caddy.NewUsagePool()

// s3Attempts is how many times minio-go tries one request before giving
// up (its default is 10, up to ~8 s of back-off). With 3, a store that
// refuses connections is reported as unavailable within about a second;
// a blackholed one within 3 × s3DialTimeout.
const s3Attempts = 3

// s3DialTimeout bounds one TCP connect to the endpoint.
const s3DialTimeout = 5 * time.Second

// s3Client is a pooled minio client; the pool closes its idle
// connections when the last config using it is cleaned up.
type s3Client struct {
	api       *minio.Client
	core      minio.Core // the same client's low-level multipart calls
	transport *http.Transport
	// secure is true for https endpoints, where minio-go sends
	// UNSIGNED-PAYLOAD and TLS guards the body; over plain http we sign
	// each body's SHA-256 instead.
	secure bool
	// partMemory bounds the bytes of part buffers all uploads through
	// this client hold at once (upload_memory).
	partMemory *semaphore.Weighted
}

// Destruct implements caddy.Destructor.
func (c *s3Client) Destruct() error {
	c.transport.CloseIdleConnections()
	return nil
}

// s3Settings are the resolved connection settings of a store.
type s3Settings struct {
	endpoint   *url.URL
	region     string
	accessKey  string
	secretKey  string
	pathStyle  bool
	caFile     string
	caPEM      []byte
	fromStatic bool  // credentials given in the config (else the AWS chain)
	memory     int64 // upload_memory
}

// poolKey hashes every setting that shapes the client, secrets included,
// so a rotated key gets a new client and no secret appears in the key.
func (st s3Settings) poolKey() string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q %t %t %d %d ", st.endpoint.String(), st.region, st.accessKey, st.secretKey, st.pathStyle, st.fromStatic, s3Attempts, st.memory)
	h.Write(st.caPEM)
	return "s3:" + hex.EncodeToString(h.Sum(nil))
}

// newS3Client builds the client; it does not connect (minio-go connects
// on the first request), so an unreachable store does not fail a config
// load.
func newS3Client(st s3Settings) (*s3Client, error) {
	secure := st.endpoint.Scheme == "https"
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	tr.DialContext = (&net.Dialer{Timeout: s3DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	if len(st.caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(st.caPEM) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates found", st.caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	lookup := minio.BucketLookupAuto
	if st.pathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(st.endpoint.Host, &minio.Options{
		Creds:        s3Credentials(st, tr),
		Secure:       secure,
		Transport:    tr,
		Region:       st.region,
		BucketLookup: lookup,
		MaxRetries:   s3Attempts,
		// TrailingHeaders stays off: minio-go then adds no CRC32C trailer
		// checksums, which several S3-compatible servers reject.
	})
	if err != nil {
		return nil, err
	}
	return &s3Client{api: client, core: minio.Core{Client: client}, transport: tr, secure: secure,
		partMemory: semaphore.NewWeighted(st.memory)}, nil
}

// s3Credentials are the configured keys, or else the standard AWS chain:
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials
// (AWS_PROFILE), then the EC2/ECS instance role.
func s3Credentials(st s3Settings, tr http.RoundTripper) *credentials.Credentials {
	if st.fromStatic {
		return credentials.NewStaticV4(st.accessKey, st.secretKey, "")
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{Client: &http.Client{Transport: tr, Timeout: 10 * time.Second}},
	})
}

// loadS3Settings reads the CA file, if any, and fills in defaults.
func loadS3Settings(st s3Settings) (s3Settings, error) {
	if st.caFile != "" {
		pem, err := os.ReadFile(st.caFile)
		if err != nil {
			return st, fmt.Errorf("ca_file: %v", err)
		}
		st.caPEM = pem
	}
	st.fromStatic = st.accessKey != "" || st.secretKey != ""
	return st, nil
}

// s3Error is a failed store operation; its message names the store, the
// S3 operation and the key, and errors.Is finds the class (ErrNotFound,
// ErrExists, ErrUnavailable) as well as the cause.
type s3Error struct {
	store, op, key string
	class          error // nil when the failure has no class
	err            error
}

func (e *s3Error) Error() string {
	msg := fmt.Sprintf("asset store %q: s3 %s %q: ", e.store, e.op, e.key)
	if e.class != nil && e.class != e.err {
		msg += e.class.Error() + ": "
	}
	return msg + e.err.Error()
}

// Unwrap gives both the class and the cause to errors.Is and errors.As.
func (e *s3Error) Unwrap() []error {
	if e.class == nil || e.class == e.err {
		return []error{e.err}
	}
	return []error{e.class, e.err}
}

// classifyS3Error maps a minio-go or transport error to ErrNotFound,
// ErrExists or ErrUnavailable, or nil when it is none of them (access
// denied, a missing bucket, a cancelled request).
func classifyS3Error(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller gave up (client gone, its own deadline): not the
		// store's fault. Transport timeouts are net errors, below.
		return nil
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch {
		case resp.Code == minio.NoSuchKey || (resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket):
			return ErrNotFound
		case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
			return ErrExists
		case resp.StatusCode >= 500, resp.Code == "SlowDown", resp.Code == "InternalError", resp.Code == "ServiceUnavailable":
			return ErrUnavailable
		}
		return nil
	}
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &netErr), errors.As(err, &urlErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return ErrUnavailable
	}
	return nil
}
