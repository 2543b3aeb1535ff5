package assetcdn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/templates"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(AssetFunctions{})
}

// AssetFunctions gives Caddy's templates environment-based asset URLs:
//
//	<script src="{{asset_url "src/main.ts"}}"></script>
//	<img src="{{asset_url "img/logo.png"}}">
//
// asset_url looks the logical path up in the build manifest kept in the
// store (written by `caddy assets sync`, by Vite or by
// webpack-manifest-plugin) and returns the store's public URL of the
// fingerprinted file: a CDN URL in production, "/assets/..." with a file
// store in development. Paths missing from the manifest map to
// themselves. asset_base_url returns the URL that keys under prefix start
// with, for building URLs in scripts.
//
// The same URLs are placeholders with the asset_urls handler (URLs),
// e.g. for a `header_up` that tells the application its asset host. The
// manifest is read at every config load and, with refresh,
// periodically. If it cannot be read the last good copy is kept.
type AssetFunctions struct {
	// The `asset_store` the assets were uploaded to. Default: the only
	// one declared.
	Store string `json:"store,omitempty"`

	// The key prefix the build directory was uploaded under (the
	// --prefix of `caddy assets sync`), e.g. "assets/". Manifest paths
	// are relative to it. Default: none.
	Prefix string `json:"prefix,omitempty"`

	// The path of the manifest under prefix. Default "manifest.json",
	// then ".vite/manifest.json".
	Manifest string `json:"manifest,omitempty"`

	// "local" makes asset_url return local URLs (local_url joined with
	// the logical path, unfingerprinted) while no manifest is found, for
	// development before the first sync, and also when the store has no
	// public_url. Default: store URLs of the unfingerprinted paths.
	Fallback string `json:"fallback,omitempty"`

	// The base of local URLs. Default "/".
	LocalURL string `json:"local_url,omitempty"`

	// How often to read the manifest again. Default: only at config
	// load.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	store        objectstore.Store
	manifestKeys []string
	current      *atomic.Pointer[assetManifest]
	logger       *zap.Logger
}

// assetManifest is the manifest in use; nil manifest means none found.
type assetManifest struct {
	key      string
	manifest Manifest
}

// lastManifests keeps the last manifest read per store and key, so a
// config reload while the store is down keeps working URLs.
var lastManifests sync.Map // "store\x00key" -> *assetManifest

// manifestLoadTimeout bounds the manifest read at config load.
const manifestLoadTimeout = 5 * time.Second

// maxManifestBytes bounds the manifest read into memory.
const maxManifestBytes = 16 << 20

// CaddyModule returns the Caddy module information.
func (AssetFunctions) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.templates.functions.assets",
		New: func() caddy.Module { return new(AssetFunctions) },
	}
}

// Provision finds the store, reads the manifest and starts the refresh.
func (a *AssetFunctions) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	store, err := objectstore.Lookup(ctx, a.Store)
	if err != nil {
		return fmt.Errorf("templates assets: %v", err)
	}
	if err := a.prepare(store); err != nil {
		return err
	}
	// Bounded: an unreachable store must not hold up a config load; the
	// last manifest read (or none) is used meanwhile.
	rctx, cancel := context.WithTimeout(ctx, manifestLoadTimeout)
	a.reload(rctx)
	cancel()
	if a.Refresh > 0 {
		go a.refreshLoop(ctx, time.Duration(a.Refresh))
	}
	return nil
}

// prepare applies defaults and checks the options against store.
func (a *AssetFunctions) prepare(store objectstore.Store) error {
	a.store = store
	a.current = new(atomic.Pointer[assetManifest])
	if a.logger == nil {
		a.logger = zap.NewNop()
	}
	a.Prefix = normalizePrefix(a.Prefix)
	if a.LocalURL == "" {
		a.LocalURL = "/"
	}
	switch a.Fallback {
	case "", "local":
	default:
		return fmt.Errorf("templates assets: fallback %q: the only choice is local", a.Fallback)
	}
	if a.Fallback == "" && store.PublicURL("probe") == "" {
		return errors.New("templates assets: the store has no public_url to build asset URLs from; set one, or `fallback local`")
	}
	if a.Refresh < 0 {
		return fmt.Errorf("templates assets: refresh %s must be positive", time.Duration(a.Refresh))
	}
	a.manifestKeys = []string{a.Prefix + "manifest.json", a.Prefix + ".vite/manifest.json"}
	if a.Manifest != "" {
		a.manifestKeys = []string{a.Prefix + strings.TrimLeft(a.Manifest, "/")}
	}
	for _, k := range a.manifestKeys {
		if err := objectstore.ValidateKey(k); err != nil {
			return fmt.Errorf("templates assets: manifest: %v", err)
		}
	}
	return nil
}

// normalizePrefix makes a key prefix a directory: "assets" -> "assets/".
func normalizePrefix(p string) string {
	p = strings.TrimLeft(p, "/")
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// reload reads the manifest; on failure the last good copy stays.
func (a *AssetFunctions) reload(ctx context.Context) {
	m, err := a.readManifest(ctx)
	cacheKey := a.Store + "\x00" + strings.Join(a.manifestKeys, "\x00")
	if err != nil {
		if prev, ok := lastManifests.Load(cacheKey); ok && a.current.Load() == nil {
			a.current.Store(prev.(*assetManifest))
		}
		a.logger.Error("reading the asset manifest failed; keeping the last one read", zap.Strings("keys", a.manifestKeys), zap.Error(err))
		return
	}
	if m.manifest == nil {
		a.logger.Warn("no asset manifest found; asset_url returns unfingerprinted paths", zap.Strings("keys", a.manifestKeys), zap.String("fallback", a.Fallback))
	} else {
		a.logger.Debug("asset manifest loaded", zap.String("key", m.key), zap.Int("entries", len(m.manifest)))
	}
	a.current.Store(m)
	lastManifests.Store(cacheKey, m)
}

// readManifest returns the first manifest found, or an empty
// assetManifest when there is none.
func (a *AssetFunctions) readManifest(ctx context.Context) (*assetManifest, error) {
	for _, key := range a.manifestKeys {
		obj, err := a.store.Open(ctx, key)
		if errors.Is(err, objectstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading manifest %q: %w", key, err)
		}
		data, err := io.ReadAll(io.LimitReader(obj, maxManifestBytes+1))
		obj.Close()
		if err != nil {
			return nil, fmt.Errorf("reading manifest %q: %w", key, err)
		}
		if len(data) > maxManifestBytes {
			return nil, fmt.Errorf("manifest %q is larger than %d bytes", key, maxManifestBytes)
		}
		m, err := ParseManifest(data)
		if err != nil {
			return nil, fmt.Errorf("manifest %q: %v", key, err)
		}
		return &assetManifest{key: key, manifest: m}, nil
	}
	return &assetManifest{}, nil
}

// refreshLoop reads the manifest every interval until the config unloads.
func (a *AssetFunctions) refreshLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			a.reload(rctx)
			cancel()
		}
	}
}

// CustomTemplateFunctions implements templates.CustomFunctions.
func (a *AssetFunctions) CustomTemplateFunctions() template.FuncMap {
	return template.FuncMap{
		"asset_url":      a.assetURL,
		"asset_base_url": a.baseURL,
	}
}

// assetURL is the URL of the file built from logical.
func (a *AssetFunctions) assetURL(logical string) (string, error) {
	cur := a.current.Load()
	if a.local(cur) {
		rel := normalizeManifestPath(logical)
		if err := objectstore.ValidateKey(rel); err != nil {
			return "", fmt.Errorf("asset_url %q: %v", logical, err)
		}
		return objectstore.JoinURL(a.LocalURL, rel), nil
	}
	file := normalizeManifestPath(logical)
	if cur != nil && cur.manifest != nil {
		file = cur.manifest.Lookup(logical)
	}
	if isFullURL(file) {
		return file, nil
	}
	key := a.Prefix + file
	if err := objectstore.ValidateKey(key); err != nil {
		return "", fmt.Errorf("asset_url %q: %v", logical, err)
	}
	return a.store.PublicURL(key), nil
}

// baseURL is the URL that asset URLs under prefix start with, ending in "/".
func (a *AssetFunctions) baseURL() string {
	if a.local(a.current.Load()) {
		return strings.TrimRight(a.LocalURL, "/") + "/"
	}
	return strings.TrimSuffix(a.store.PublicURL(a.Prefix+"x"), "x")
}

// local reports whether URLs are local ones: fallback local and no
// manifest, or no public_url at all.
func (a *AssetFunctions) local(cur *assetManifest) bool {
	if a.Fallback != "local" {
		return false
	}
	return cur == nil || cur.manifest == nil || a.store.PublicURL("probe") == ""
}

// Interface guards
var (
	_ caddy.Provisioner         = (*AssetFunctions)(nil)
	_ templates.CustomFunctions = (*AssetFunctions)(nil)
	_ caddyfile.Unmarshaler     = (*AssetFunctions)(nil)
)
