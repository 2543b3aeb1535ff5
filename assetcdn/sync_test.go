package assetcdn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// writeBuildDir creates files (slash paths) under a new directory.
func writeBuildDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fingerprintOf(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])[:fingerprintHexLen]
}

// readStoredManifest reads and parses the manifest at key.
func readStoredManifest(t testing.TB, s objectstore.Store, key string) (Manifest, objectstore.ObjectInfo) {
	t.Helper()
	obj, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	data, _ := io.ReadAll(obj)
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return m, obj.Info()
}

func TestSyncFingerprintsAndIsIdempotent(t *testing.T) {
	store := newTestStore(t)
	dir := writeBuildDir(t, map[string]string{
		"img/logo.png":  "\x89PNG\r\n\x1a\nlogo",
		"css/site.css":  "body{}",
		"fonts/a.woff2": "wOF2",
		"LICENSE":       "MIT",
		".DS_Store":     "junk",
		".git/config":   "junk",
	})
	ctx := context.Background()
	report, err := Sync(ctx, store, dir, SyncOptions{Prefix: "static"})
	if err != nil {
		t.Fatal(err)
	}
	if report.Uploaded != 4 || report.Skipped != 0 || report.UploadedBytes != int64(12+6+4+3) || !report.ManifestUploaded || report.ManifestKey != "static/manifest.json" {
		t.Fatalf("first run: %+v", report)
	}
	logoKey := "static/img/logo." + fingerprintOf("\x89PNG\r\n\x1a\nlogo") + ".png"
	info, err := store.Stat(ctx, logoKey)
	if err != nil {
		t.Fatalf("logo not stored at %s: %v (have %v)", logoKey, err, objectKeys(t, store))
	}
	if info.ContentType != "image/png" || info.CacheControl != immutableCacheControl {
		t.Errorf("logo stored as %q, %q", info.ContentType, info.CacheControl)
	}
	if fi, _ := store.Stat(ctx, "static/fonts/a."+fingerprintOf("wOF2")+".woff2"); fi.ContentType != "font/woff2" {
		t.Errorf("font type %q", fi.ContentType)
	}
	m, minfo := readStoredManifest(t, store, "static/manifest.json")
	if m.Lookup("img/logo.png") != strings.TrimPrefix(logoKey, "static/") || m.Lookup("LICENSE") != "LICENSE."+fingerprintOf("MIT") {
		t.Errorf("manifest %v", m)
	}
	if minfo.CacheControl != manifestCacheControl || minfo.ContentType != "application/json" {
		t.Errorf("manifest stored as %q, %q", minfo.ContentType, minfo.CacheControl)
	}
	for _, k := range objectKeys(t, store) {
		if strings.Contains(k, "DS_Store") || strings.Contains(k, ".git") {
			t.Errorf("hidden file uploaded: %s", k)
		}
	}

	report, err = Sync(ctx, store, dir, SyncOptions{Prefix: "static/"})
	if err != nil {
		t.Fatal(err)
	}
	if report.Uploaded != 0 || report.Skipped != 4 || report.ManifestUploaded {
		t.Fatalf("second run uploaded something: %+v", report)
	}

	// A changed file gets a new name; the old one stays for old pages.
	if err := os.WriteFile(filepath.Join(dir, "css", "site.css"), []byte("body{color:red}"), 0o640); err != nil {
		t.Fatal(err)
	}
	report, err = Sync(ctx, store, dir, SyncOptions{Prefix: "static/"})
	if err != nil || report.Uploaded != 1 || !report.ManifestUploaded {
		t.Fatalf("after a change: %+v, %v", report, err)
	}
	if _, err := store.Stat(ctx, "static/css/site."+fingerprintOf("body{}")+".css"); err != nil {
		t.Errorf("old version removed: %v", err)
	}
}

func TestSyncDryRunUploadsNothing(t *testing.T) {
	store := newTestStore(t)
	dir := writeBuildDir(t, map[string]string{"a.js": "1", "b.js": "2"})
	report, err := Sync(context.Background(), store, dir, SyncOptions{DryRun: true})
	if err != nil || report.Uploaded != 2 || !report.ManifestUploaded {
		t.Fatalf("%+v, %v", report, err)
	}
	if keys := objectKeys(t, store); len(keys) != 0 {
		t.Fatalf("dry run stored %v", keys)
	}
}

func TestSyncKeepsViteNames(t *testing.T) {
	vite := `{
		"src/main.ts": {"file": "assets/main-BfCq8Kzx.js", "src": "src/main.ts", "isEntry": true, "css": ["assets/main-D1x2y3z4.css"], "imports": ["_shared-AbC.js"]},
		"_shared-AbC.js": {"file": "assets/shared-AbC.js"},
		"src/missing.ts": {"file": "assets/missing-zzz.js"}
	}`
	dir := writeBuildDir(t, map[string]string{
		".vite/manifest.json":       vite,
		"assets/main-BfCq8Kzx.js":   "main",
		"assets/main-D1x2y3z4.css":  "css",
		"assets/shared-AbC.js":      "shared",
		"favicon.ico":               "ico",
		"manifest.webmanifest":      `{"name": "app"}`,
		"assets/unlisted-chunk.txt": "x",
	})
	store := newTestStore(t)
	if _, err := Sync(context.Background(), store, dir, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	keys := strings.Join(objectKeys(t, store), " ")
	for _, want := range []string{"assets/main-BfCq8Kzx.js", "assets/main-D1x2y3z4.css", "assets/shared-AbC.js", "favicon." + fingerprintOf("ico") + ".ico", "manifest.json"} {
		if !strings.Contains(keys, want) {
			t.Errorf("%s not stored (have %s)", want, keys)
		}
	}
	if strings.Contains(keys, ".vite") {
		t.Errorf("Vite manifest uploaded: %s", keys)
	}
	m, _ := readStoredManifest(t, store, "manifest.json")
	if m["src/main.ts"] != "assets/main-BfCq8Kzx.js" || m["favicon.ico"] != "favicon."+fingerprintOf("ico")+".ico" {
		t.Errorf("manifest %v", m)
	}
	if _, ok := m["src/missing.ts"]; ok {
		t.Error("entry for a file not in the build kept")
	}
}

func TestSyncTreatsWebAppManifestAsAFile(t *testing.T) {
	dir := writeBuildDir(t, map[string]string{"manifest.json": `{"name": "My App", "display": "standalone"}`, "a.css": "x"})
	store := newTestStore(t)
	if _, err := Sync(context.Background(), store, dir, SyncOptions{Manifest: "asset-manifest.json"}); err != nil {
		t.Fatal(err)
	}
	m, _ := readStoredManifest(t, store, "asset-manifest.json")
	if m.Lookup("manifest.json") != "manifest."+fingerprintOf(`{"name": "My App", "display": "standalone"}`)+".json" {
		t.Errorf("PWA manifest not uploaded as a file: %v", m)
	}
}

func TestSyncWebpackManifest(t *testing.T) {
	dir := writeBuildDir(t, map[string]string{
		"manifest.json":       `{"main.js": "/main.1a2b3c.js", "logo.png": "img/logo.9f8e.png"}`,
		"main.1a2b3c.js":      "js",
		"img/logo.9f8e.png":   "png",
		"robots.txt":          "ok",
		"sub/manifest.json":   "{}",
		"sub/other-file.json": "{}",
	})
	store := newTestStore(t)
	report, err := Sync(context.Background(), store, dir, SyncOptions{Prefix: "app"})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := readStoredManifest(t, store, "app/manifest.json")
	if m["main.js"] != "main.1a2b3c.js" || m["logo.png"] != "img/logo.9f8e.png" || m.Lookup("robots.txt") == "robots.txt" {
		t.Errorf("manifest %v", m)
	}
	if _, err := store.Stat(context.Background(), "app/main.1a2b3c.js"); err != nil {
		t.Errorf("webpack file not kept as-is: %v", err)
	}
	if report.Uploaded != 5 {
		t.Errorf("report %+v", report)
	}
}

func TestSyncErrors(t *testing.T) {
	store := newTestStore(t)
	if _, err := Sync(context.Background(), store, filepath.Join(t.TempDir(), "missing"), SyncOptions{}); err == nil || !strings.Contains(err.Error(), "build directory") {
		t.Errorf("missing dir: %v", err)
	}
	dir := writeBuildDir(t, map[string]string{".vite/manifest.json": "[1]"})
	if _, err := Sync(context.Background(), store, dir, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("broken Vite manifest: %v", err)
	}
	dir = writeBuildDir(t, map[string]string{"a.js": "1"})
	failing := failingPutStore{newTestStore(t)}
	if _, err := Sync(context.Background(), failing, dir, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "a.js") {
		t.Errorf("failed upload: %v", err)
	}
	if keys := objectKeys(t, failing); len(keys) != 0 {
		t.Errorf("manifest written after a failed upload: %v", keys)
	}
}

// failingPutStore refuses every write.
type failingPutStore struct{ *objectstore.FileStore }

func (failingPutStore) Put(context.Context, string, io.Reader, int64, objectstore.PutOptions) (objectstore.ObjectInfo, error) {
	return objectstore.ObjectInfo{}, objectstore.ErrUnavailable
}

func TestFingerprintedName(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		"img/logo.png":   "img/logo.abababababab.png",
		"app.min.js":     "app.min.abababababab.js",
		"LICENSE":        "LICENSE.abababababab",
		"dir/.htaccess":  "dir/.htaccess.abababababab",
		"a.b/c":          "a.b/c.abababababab",
		"fonts/x.woff2":  "fonts/x.abababababab.woff2",
		"deep/a/b/c.css": "deep/a/b/c.abababababab.css",
	} {
		if got := fingerprintedName(in, sum); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestLoadStoreFromConfig(t *testing.T) {
	root := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"apps": map[string]any{"asset_store": map[string]any{"stores": map[string]any{
		"media": map[string]any{"backend": "file", "root": root, "public_url": "/media"},
	}}}})
	file := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(file, cfg, 0o640); err != nil {
		t.Fatal(err)
	}
	ctx := caddyContext(t)
	store, err := objectstore.LoadFromConfig(ctx, file, "", "media")
	if err != nil {
		t.Fatal(err)
	}
	if got := store.PublicURL("a.png"); got != "/media/a.png" {
		t.Errorf("store public URL %q", got)
	}
	if _, err := objectstore.LoadFromConfig(ctx, file, "", "other"); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Errorf("unknown store: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.json")
	_ = os.WriteFile(empty, []byte(`{"apps": {}}`), 0o640)
	if _, err := objectstore.LoadFromConfig(ctx, empty, "", ""); err == nil || !strings.Contains(err.Error(), "declares no asset store") {
		t.Errorf("no store: %v", err)
	}
	var out bytes.Buffer
	printSyncReport(&out, SyncReport{Uploaded: 2, UploadedBytes: 2048, Skipped: 1, ManifestKey: "manifest.json", ManifestEntries: 3}, false)
	if !strings.Contains(out.String(), "uploaded 2 files (2.0 KiB), skipped 1") || !strings.Contains(out.String(), "manifest manifest.json: 3 entries, unchanged") {
		t.Errorf("report output %q", out.String())
	}
}
