package assetcdn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// SyncOptions configure Sync.
type SyncOptions struct {
	// The key prefix the build directory is uploaded under, e.g.
	// "assets/". Default: none.
	Prefix string
	// The manifest's path under Prefix. Default "manifest.json".
	Manifest string
	// Decide and count, but upload nothing.
	DryRun bool
	// Uploads in flight at once. Default 4.
	Concurrency int
}

// SyncReport counts what Sync did (or, with DryRun, would do).
type SyncReport struct {
	Uploaded      int
	UploadedBytes int64
	Skipped       int
	SkippedBytes  int64
	// The manifest's key, its entry count, and whether it changed.
	ManifestKey      string
	ManifestEntries  int
	ManifestUploaded bool
}

// Cache-Control of synced files: fingerprinted names never change
// content, so browsers and CDNs may keep them for a year (RFC 8246
// immutable). The manifest changes with every build and is revalidated.
const (
	immutableCacheControl = "public, max-age=31536000, immutable"
	manifestCacheControl  = "no-cache"
	// sha256MetaKey is the user metadata that records a file's digest,
	// so a later sync can skip it without reading it back.
	sha256MetaKey = "sha256"
	// fingerprintHexLen is how much of the sha256 goes into a name.
	fingerprintHexLen = 12
)

// syncFile is one file of the build directory and where it goes.
type syncFile struct {
	rel    string // path in the build directory, slash-separated
	target string // path under the prefix: fingerprinted, or rel
	abs    string
	size   int64
	sha256 string
	ctype  string
}

// Sync uploads the build directory dir to store and writes a manifest
// that maps each file's path to its uploaded name, so the asset_url
// template function can find it.
//
// Every file gets a fingerprinted name, name.<12 hex of sha256>.ext,
// except the files that a build tool already fingerprinted and listed in
// its manifest (Vite's .vite/manifest.json, webpack-manifest-plugin's
// manifest.json): those keep their names, and the tool's entries ("src/main.ts" ->
// "assets/main-4f3a.js") are merged into the written manifest, which is a
// flat map like webpack-manifest-plugin's. Hidden files and directories
// (".DS_Store", ".vite/") are not uploaded.
//
// A file already stored under its key with the same size and sha256 is
// skipped, so a second run uploads nothing. Files are uploaded with
// Cache-Control immutable and a Content-Type from their extension; the
// manifest goes last, with no-cache, so a reader never sees a manifest
// that names a file not yet uploaded. Old files are never deleted: pages
// rendered before the deploy still reference them.
func Sync(ctx context.Context, store objectstore.Store, dir string, opts SyncOptions) (SyncReport, error) {
	opts.Prefix = normalizePrefix(opts.Prefix)
	if opts.Manifest == "" {
		opts.Manifest = "manifest.json"
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	report := SyncReport{ManifestKey: opts.Prefix + strings.TrimLeft(opts.Manifest, "/")}
	if err := objectstore.ValidateKey(report.ManifestKey); err != nil {
		return report, fmt.Errorf("manifest key: %v", err)
	}
	tool, consumed, err := readToolManifest(dir)
	if err != nil {
		return report, err
	}
	files, err := walkBuildDir(dir, consumed)
	if err != nil {
		return report, err
	}
	manifest := make(Manifest, len(files)+len(tool))
	keep := make(map[string]bool, len(tool))
	for logical, file := range tool {
		keep[file] = true
		if logical != file {
			manifest[logical] = file
		}
	}
	for _, f := range files {
		if err := f.hash(); err != nil {
			return report, err
		}
		f.target = fingerprintedName(f.rel, f.sha256)
		if keep[f.rel] {
			f.target = f.rel
		}
		if opts.Prefix+f.target == report.ManifestKey {
			return report, fmt.Errorf("file %s would be stored at the manifest's key %q; choose another --manifest", f.abs, report.ManifestKey)
		}
		if f.target != f.rel {
			manifest[f.rel] = f.target
		}
	}
	if err := uploadFiles(ctx, store, files, opts, &report); err != nil {
		return report, err
	}
	report.ManifestEntries = len(manifest)
	return report, uploadManifest(ctx, store, manifest, opts, &report)
}

// readToolManifest reads the build tool's manifest, if any, and returns
// its entries and the manifest files it consumed (not uploaded). A
// manifest.json is taken for a webpack manifest only when its values name
// files of the build: a web app manifest (PWA) of the same name is
// uploaded as an ordinary file.
func readToolManifest(dir string) (toolManifest, map[string]bool, error) {
	for _, rel := range []string{".vite/manifest.json", "manifest.json"} {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading build manifest: %v", err)
		}
		m, err := ParseManifest(data)
		if err != nil {
			if rel == "manifest.json" {
				continue
			}
			return nil, nil, fmt.Errorf("build manifest %s: %v", filepath.Join(dir, rel), err)
		}
		tm := toolManifest{}
		for logical, file := range m {
			if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(file))); err == nil && fi.Mode().IsRegular() {
				tm[logical] = file
			}
		}
		for _, file := range viteSideFiles(data) {
			tm[file] = file
		}
		if len(tm) == 0 && rel == "manifest.json" {
			continue
		}
		return tm, map[string]bool{rel: true}, nil
	}
	return nil, nil, nil
}

// toolManifest are the entries of the build tool's manifest whose files
// exist, including the fingerprinted side files (CSS, assets) as
// themselves.
type toolManifest Manifest

// viteSideFiles are the CSS and asset files a Vite manifest lists
// besides each entry's "file"; they are fingerprinted too.
func viteSideFiles(data []byte) []string {
	var doc map[string]struct {
		CSS    []string `json:"css"`
		Assets []string `json:"assets"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return nil
	}
	var files []string
	for _, e := range doc {
		for _, f := range append(e.CSS, e.Assets...) {
			files = append(files, normalizeManifestPath(f))
		}
	}
	return files
}

// walkBuildDir lists the regular files of dir, skipping hidden ones and
// the consumed tool manifest, in path order.
func walkBuildDir(dir string, consumed map[string]bool) ([]*syncFile, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("build directory: %v", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build directory %s is not a directory", dir)
	}
	var files []*syncFile
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || consumed[rel] {
			return nil
		}
		info, err := os.Stat(p) // follows symlinks to files
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		files = append(files, &syncFile{rel: rel, abs: p, size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walking build directory %s: %v", dir, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files, nil
}

// hash reads the file for its sha256 and Content-Type.
func (f *syncFile) hash() error {
	file, err := os.Open(f.abs)
	if err != nil {
		return fmt.Errorf("reading %s: %v", f.abs, err)
	}
	defer file.Close()
	h := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(h, io.TeeReader(file, &limitedBuffer{&head, 512}))
	if err != nil {
		return fmt.Errorf("reading %s: %v", f.abs, err)
	}
	f.size = n
	f.sha256 = hex.EncodeToString(h.Sum(nil))
	f.ctype = assetContentType(f.rel, head.Bytes())
	return nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// fingerprintedName inserts the digest before the extension:
// "img/logo.png" -> "img/logo.3f2a9c1b2d4e.png".
func fingerprintedName(rel, sum string) string {
	ext := path.Ext(rel)
	base := strings.TrimSuffix(rel, ext)
	if strings.HasSuffix(base, "/") || base == "" { // ".png" style names have no base
		return rel + "." + sum[:fingerprintHexLen]
	}
	return base + "." + sum[:fingerprintHexLen] + ext
}

// assetTypes fills gaps in Go's extension table for build output.
var assetTypes = map[string]string{
	".woff2":       "font/woff2",
	".woff":        "font/woff",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".ico":         "image/x-icon",
	".map":         "application/json",
	".txt":         "text/plain; charset=utf-8",
	".webmanifest": "application/manifest+json",
	".mjs":         "text/javascript; charset=utf-8",
}

// assetContentType is the type of a build file by its extension, else
// sniffed from its first bytes.
func assetContentType(rel string, head []byte) string {
	ext := strings.ToLower(path.Ext(rel))
	if t, ok := assetTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return http.DetectContentType(head)
}

// uploadFiles uploads every file not already stored, opts.Concurrency at
// a time; the first failure stops the rest.
func uploadFiles(ctx context.Context, store objectstore.Store, files []*syncFile, opts SyncOptions, report *SyncReport) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan *syncFile)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Go(func() {
			for f := range jobs {
				uploaded, err := syncOne(ctx, store, f, opts)
				mu.Lock()
				switch {
				case err != nil:
					cancel(err)
				case uploaded:
					report.Uploaded++
					report.UploadedBytes += f.size
				default:
					report.Skipped++
					report.SkippedBytes += f.size
				}
				mu.Unlock()
			}
		})
	}
send:
	for _, f := range files {
		select {
		case jobs <- f:
		case <-ctx.Done():
			break send
		}
	}
	close(jobs)
	wg.Wait()
	return context.Cause(ctx)
}

// syncOne uploads one file unless the store has it already.
func syncOne(ctx context.Context, store objectstore.Store, f *syncFile, opts SyncOptions) (bool, error) {
	key := opts.Prefix + f.target
	if err := objectstore.ValidateKey(key); err != nil {
		return false, fmt.Errorf("file %s: %v", f.abs, err)
	}
	if same, err := storedAlready(ctx, store, key, f.size, f.sha256); err != nil || same {
		return false, err
	}
	if opts.DryRun {
		return true, nil
	}
	file, err := os.Open(f.abs)
	if err != nil {
		return false, fmt.Errorf("reading %s: %v", f.abs, err)
	}
	defer file.Close()
	putOpts := objectstore.PutOptions{ContentType: f.ctype, CacheControl: immutableCacheControl, Metadata: map[string]string{sha256MetaKey: f.sha256}}
	if _, err := store.Put(ctx, key, file, f.size, putOpts); err != nil {
		return false, fmt.Errorf("uploading %s to %q: %w", f.abs, key, err)
	}
	return true, nil
}

// storedAlready reports whether key holds content of this size and digest.
func storedAlready(ctx context.Context, store objectstore.Store, key string, size int64, sum string) (bool, error) {
	info, err := store.Stat(ctx, key)
	if errors.Is(err, objectstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %q: %w", key, err)
	}
	return info.Size == size && strings.EqualFold(info.Metadata[sha256MetaKey], sum), nil
}

// uploadManifest writes the manifest, after every file it names.
func uploadManifest(ctx context.Context, store objectstore.Store, m Manifest, opts SyncOptions, report *SyncReport) error {
	data, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding manifest: %v", err)
	}
	data = append(data, '\n')
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	same, err := storedAlready(ctx, store, report.ManifestKey, int64(len(data)), digest)
	if err != nil || same {
		return err
	}
	report.ManifestUploaded = true
	if opts.DryRun {
		return nil
	}
	putOpts := objectstore.PutOptions{ContentType: "application/json", CacheControl: manifestCacheControl, Metadata: map[string]string{sha256MetaKey: digest}}
	if _, err := store.Put(ctx, report.ManifestKey, bytes.NewReader(data), int64(len(data)), putOpts); err != nil {
		return fmt.Errorf("uploading manifest to %q: %w", report.ManifestKey, err)
	}
	return nil
}
