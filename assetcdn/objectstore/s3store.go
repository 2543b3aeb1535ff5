package objectstore

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(S3Store{})
}

// S3Store keeps objects in an S3-compatible bucket: AWS S3, versitygw,
// MinIO, Cloudflare R2 and the like. Uploads are streamed part by part,
// so memory stays bounded whatever the object size. Stores with the same
// connection settings share one client, kept across config reloads.
type S3Store struct {
	// The bucket that holds the objects. Required. It must exist.
	Bucket string `json:"bucket,omitempty"`

	// The S3 endpoint URL, http:// or https:// with host and optional
	// port and no path, e.g. "http://127.0.0.1:7070" for a local
	// versitygw. Default: AWS S3 ("https://s3.amazonaws.com").
	Endpoint string `json:"endpoint,omitempty"`

	// The region requests are signed for, e.g. "eu-west-1". Default: looked
	// up from the bucket on AWS; "us-east-1" for most other servers.
	Region string `json:"region,omitempty"`

	// The access key ID. Use a placeholder such as {env.S3_ACCESS_KEY} to
	// keep it out of the config. When access_key and secret_key are both
	// empty the standard AWS sources are used, in order: the environment
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), the shared credentials
	// file (~/.aws/credentials, AWS_PROFILE), then the EC2/ECS instance
	// role.
	AccessKey string `json:"access_key,omitempty"`

	// The secret access key; see access_key. Never logged. Use a
	// placeholder such as {env.S3_SECRET_KEY}: the config JSON can be
	// read back through Caddy's admin API.
	SecretKey string `json:"secret_key,omitempty"`

	// Address buckets as http://host/bucket/key instead of
	// http://bucket.host/key. versitygw and MinIO need it. Default: virtual
	// hosted style for AWS and other providers minio-go recognises, path
	// style for any other endpoint.
	PathStyle bool `json:"path_style,omitempty"`

	// A folder inside the bucket that holds this store's objects, so
	// several stores or applications can share one bucket, e.g. "uploads".
	// A trailing "/" is added if missing. Keys and List prefixes are
	// relative to it. Default: the bucket root.
	Prefix string `json:"prefix,omitempty"`

	// The URL clients fetch objects from: the bucket's (or CDN's) URL for
	// the prefix folder, e.g. "https://cdn.example.com/uploads" when a CDN
	// serves the bucket root and prefix is "uploads". Object keys are
	// appended to it. Default: objects have no public URL (private bucket:
	// serve them with asset_serve or presigned URLs).
	PublicBaseURL string `json:"public_url,omitempty"`

	// The size of one part of a multipart upload, in bytes. An upload in
	// progress holds one or two parts in memory (two when upload_memory
	// has room, so reading the next part from the client overlaps with
	// sending the last to the store), and an object can have at most
	// 10,000 parts, so this also caps the object size (8 MiB parts: 78
	// GiB). Objects no larger than one part are sent in a single PUT;
	// those under 64 KiB take no part buffer at all. Default: 8 MiB;
	// minimum 5 MiB (an S3 limit).
	PartSize int64 `json:"part_size,omitempty"`

	// The most memory the part buffers of all uploads in progress through
	// this store may hold together, which bounds the process whatever
	// the number of clients: at most upload_memory / part_size uploads
	// hold a buffer at once. An upload that finds no room waits up to
	// 10 s, then is refused with 503 and Retry-After. Default: 512 MiB.
	UploadMemory int64 `json:"upload_memory,omitempty"`

	// How long an upload may take to fill one part buffer of
	// upload_memory: while it holds one, asset_offload's min_rate rises
	// to part_size per part_hold_time (8 MiB per 5m, about 28 KB/s, by
	// default), so that clients trickling just above min_rate cannot keep
	// every buffer and every other upload waiting. Default: 5m.
	PartHoldTime caddy.Duration `json:"part_hold_time,omitempty"`

	// A PEM file of CA certificates to trust instead of the system roots,
	// for an https endpoint with a private CA. Certificates are always
	// verified.
	CAFile string `json:"ca_file,omitempty"`

	name      string // the store's name in the asset_store app, for errors
	settings  s3Settings
	bucket    string
	prefix    string // resolved Prefix, "" or ending in "/"
	publicURL string
	client    *s3Client
	poolKey   string
	released  bool          // Cleanup ran
	parts     *sync.Pool    // *[]byte buffers of PartSize bytes
	partWait  time.Duration // how long Put waits for room in upload_memory
	logger    *zap.Logger
}

// Part size limits, from S3: every part but the last must be at least
// 5 MiB; an upload has at most 10,000 parts.
const (
	defaultS3PartSize     = 8 << 20
	defaultS3UploadMemory = 512 << 20
	defaultPartHoldTime   = 5 * time.Minute
	minS3PartSize         = 5 << 20
	maxS3PartSize         = 5 << 30
	maxS3Parts            = 10000
)

// CaddyModule returns the Caddy module information.
func (S3Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "asset_store.backends.s3",
		New: func() caddy.Module { return new(S3Store) },
	}
}

// Provision applies defaults, resolves {env.*} placeholders and attaches
// the store to the shared client for its settings. It does not contact the
// store: an unreachable store fails requests (ErrUnavailable), not the
// config load.
func (s *S3Store) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if s.PartSize == 0 {
		s.PartSize = defaultS3PartSize
	}
	if s.UploadMemory == 0 {
		s.UploadMemory = defaultS3UploadMemory
	}
	s.partWait = partBufferWait
	if s.PartHoldTime == 0 {
		s.PartHoldTime = caddy.Duration(defaultPartHoldTime)
	}
	// ReplaceKnown rather than ReplaceAll: {env.*} is always known, and a
	// secret that happens to contain braces must survive intact.
	repl := caddy.NewReplacer()
	resolve := func(v string) string { return repl.ReplaceKnown(v, "") }
	s.bucket = resolve(s.Bucket)
	s.prefix = resolve(s.Prefix)
	if s.prefix != "" && !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	s.publicURL = resolve(s.PublicBaseURL)
	endpoint := resolve(s.Endpoint)
	if endpoint == "" {
		endpoint = "https://s3.amazonaws.com"
	}
	u, err := parseS3Endpoint(endpoint)
	if err != nil {
		return err
	}
	s.settings = s3Settings{
		endpoint:  u,
		region:    resolve(s.Region),
		accessKey: resolve(s.AccessKey),
		secretKey: resolve(s.SecretKey),
		pathStyle: s.PathStyle,
		caFile:    resolve(s.CAFile),
		memory:    s.UploadMemory,
	}
	if s.name == "" {
		s.name = "s3://" + s.bucket + "/" + s.prefix
	}
	if err := s.Validate(); err != nil {
		return err
	}
	if s.settings, err = loadS3Settings(s.settings); err != nil {
		return fmt.Errorf("s3 asset store: %v", err)
	}
	return s.attachClient()
}

// attachClient takes a reference to the pooled client for the settings.
func (s *S3Store) attachClient() error {
	key := s.settings.poolKey()
	val, _, err := s3Clients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newS3Client(s.settings)
	})
	if err != nil {
		return fmt.Errorf("s3 asset store: %v", err)
	}
	s.client, s.poolKey = val.(*s3Client), key
	size := int(s.PartSize)
	s.parts = &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
	s.logger.Debug("s3 asset store ready", zap.Object("store", s))
	return nil
}

// parseS3Endpoint accepts http(s)://host[:port] and nothing more.
func parseS3Endpoint(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("s3 asset store: endpoint %q: %v", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("s3 asset store: endpoint %q: want http://host[:port] or https://host[:port]", endpoint)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("s3 asset store: endpoint %q: must not have a path, query or user info", endpoint)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// Validate checks the settings after placeholders are resolved.
func (s *S3Store) Validate() error {
	if s.bucket == "" {
		return errors.New("s3 asset store: bucket is required")
	}
	if s.PartSize < minS3PartSize || s.PartSize > maxS3PartSize {
		return fmt.Errorf("s3 asset store: part_size %d: must be between 5 MiB and 5 GiB", s.PartSize)
	}
	if time.Duration(s.PartHoldTime) < time.Second {
		return fmt.Errorf("s3 asset store: part_hold_time %v must be at least 1s", time.Duration(s.PartHoldTime))
	}
	if s.UploadMemory < s.PartSize {
		return fmt.Errorf("s3 asset store: upload_memory %d must hold at least one part of part_size %d", s.UploadMemory, s.PartSize)
	}
	if (s.settings.accessKey == "") != (s.settings.secretKey == "") {
		return errors.New("s3 asset store: access_key and secret_key go together: set both, or neither to use the AWS credential chain")
	}
	if s.prefix != "" {
		if err := ValidateKey(s.prefix + "x"); err != nil {
			return fmt.Errorf("s3 asset store: prefix %q: %v", s.Prefix, err)
		}
	}
	if s.publicURL != "" {
		if u, err := url.Parse(s.publicURL); err != nil || (u.Scheme != "" && u.Host == "") {
			return fmt.Errorf("s3 asset store: public_url %q: not a URL", s.publicURL)
		}
	}
	return nil
}

// Cleanup releases this config's reference to the shared client; the last
// one closes its idle connections. The store stays usable (it dials
// anew), so a log writer can still flush through it at shutdown, when
// the order of module cleanups is not defined. It is safe after a failed
// or partial Provision, and safe to call twice.
func (s *S3Store) Cleanup() error {
	if s.client == nil || s.released {
		return nil
	}
	s.released = true
	_, err := s3Clients.Delete(s.poolKey)
	return err
}

// SetName tells the store its name in the asset_store app, which its
// errors then carry (`asset store "media": s3 PUT "a.png": ...`). Call it
// before the store is used. Default: "s3://<bucket>/<prefix>".
func (s *S3Store) SetName(name string) { s.name = name }

// MarshalLogObject logs the settings without the secret key, so the store
// can be logged with zap.Object or zap.Any.
func (s *S3Store) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("name", s.name)
	enc.AddString("bucket", s.bucket)
	if s.settings.endpoint != nil {
		enc.AddString("endpoint", s.settings.endpoint.String())
	}
	enc.AddString("region", s.settings.region)
	enc.AddBool("path_style", s.PathStyle)
	enc.AddString("prefix", s.prefix)
	enc.AddString("public_url", s.publicURL)
	enc.AddInt64("part_size", s.PartSize)
	enc.AddInt64("upload_memory", s.UploadMemory)
	if s.settings.fromStatic {
		enc.AddString("credentials", "access_key "+s.settings.accessKey)
	} else {
		enc.AddString("credentials", "AWS chain (env, shared file, instance role)")
	}
	return nil
}

// String describes the store without secrets.
func (s *S3Store) String() string {
	return fmt.Sprintf("s3 asset store %q (bucket %q, prefix %q)", s.name, s.bucket, s.prefix)
}

// Interface guards
var (
	_ Store                   = (*S3Store)(nil)
	_ caddy.Provisioner       = (*S3Store)(nil)
	_ caddy.Validator         = (*S3Store)(nil)
	_ caddy.CleanerUpper      = (*S3Store)(nil)
	_ caddyfile.Unmarshaler   = (*S3Store)(nil)
	_ zapcore.ObjectMarshaler = (*S3Store)(nil)
	_ fmt.Stringer            = (*S3Store)(nil)
	_ copier                  = (*S3Store)(nil)
)
