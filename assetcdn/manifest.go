package assetcdn

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Manifest maps logical asset paths ("img/logo.png", "src/main.ts") to
// the fingerprinted files built from them ("img/logo.3f2a9c1b2d4e.png"),
// both relative to the build directory (the store's key prefix).
// Values that are full URLs ("https://...", "//...") are kept as they are.
type Manifest map[string]string

// ParseManifest reads the manifest formats of common build tools:
//
//   - a flat map {"img/logo.png": "img/logo.3f2a9c1b.png"}, as written by
//     webpack-manifest-plugin and by `caddy assets sync`;
//   - Vite's .vite/manifest.json {"src/main.ts": {"file": "assets/main-4f3a.js",
//     "css": [...], "assets": [...], "imports": [...]}}: each entry maps to
//     its "file"; CSS and assets are already fingerprinted and are found
//     under their own names;
//   - Sprockets' {"files": {...}, "assets": {"logo.png": "logo-3f2a.png"}}.
//
// A leading "/" on values is dropped. Entries of other shapes are
// ignored; a document that is not a JSON object is an error.
func ParseManifest(data []byte) (Manifest, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("manifest is not a JSON object: %v", err)
	}
	if doc == nil {
		return nil, errors.New("manifest is not a JSON object: null")
	}
	if sprockets, ok := sprocketsAssets(doc); ok {
		doc = sprockets
	}
	m := make(Manifest, len(doc))
	for logical, raw := range doc {
		var file string
		if json.Unmarshal(raw, &file) != nil {
			var entry struct {
				File string `json:"file"`
			}
			if json.Unmarshal(raw, &entry) != nil || entry.File == "" {
				continue
			}
			file = entry.File
		}
		if file = normalizeManifestPath(file); file != "" {
			m[normalizeManifestPath(logical)] = file
		}
	}
	return m, nil
}

// sprocketsAssets returns the "assets" map of a Sprockets manifest.
func sprocketsAssets(doc map[string]json.RawMessage) (map[string]json.RawMessage, bool) {
	if _, ok := doc["files"]; !ok {
		return nil, false
	}
	var assets map[string]json.RawMessage
	if raw, ok := doc["assets"]; !ok || json.Unmarshal(raw, &assets) != nil {
		return nil, false
	}
	return assets, true
}

// normalizeManifestPath drops a leading "/" and "./" of a relative path.
func normalizeManifestPath(p string) string {
	if isFullURL(p) {
		return p
	}
	p = strings.TrimPrefix(p, "./")
	return strings.TrimLeft(p, "/")
}

// isFullURL reports whether a manifest value is a URL rather than a path.
func isFullURL(p string) bool {
	return strings.HasPrefix(p, "//") || strings.Contains(p, "://")
}

// Lookup returns the file a logical path was built into. Paths not in
// the manifest map to themselves: files uploaded under their own names.
func (m Manifest) Lookup(logical string) string {
	logical = normalizeManifestPath(logical)
	if file, ok := m[logical]; ok {
		return file
	}
	return logical
}
