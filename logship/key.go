package logship

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// DefaultKey is the object key template of a shipped spool file.
const DefaultKey = "{prefix}/{host}/{yyyy}/{mm}/{dd}/{HH}/{name}-{ts}-{uuid}.log.gz"

// keyTemplate renders object keys. Placeholders: {prefix}, {host},
// {name}, {uuid} (of the spool file), {ts} (the spool file's creation
// time, UTC, 20060102T150405.000Z), {yyyy} {mm} {dd} {HH} {MM} (parts of
// that time). Empty path segments, as an empty prefix leaves, are
// dropped.
type keyTemplate struct {
	parts []objectstore.TemplatePart
}

// keyValues are what one spool file's key is rendered from.
type keyValues struct {
	Prefix, Host, Name, UUID string
	Time                     time.Time
}

// parseKeyTemplate parses tmpl. It must contain {uuid}, so that two
// spool files never share a key, and {ts}, so that keys sort in the
// order the files were written.
func parseKeyTemplate(tmpl string) (keyTemplate, error) {
	parts, err := objectstore.SplitTemplate(tmpl, "prefix", "host", "name", "uuid", "ts", "yyyy", "mm", "dd", "HH", "MM")
	if err != nil {
		return keyTemplate{}, err
	}
	t := keyTemplate{parts: parts}
	if !t.uses("uuid") || !t.uses("ts") {
		return keyTemplate{}, fmt.Errorf("key template %q must contain {ts} and {uuid}", tmpl)
	}
	return t, nil
}

func (t keyTemplate) uses(name string) bool {
	for _, p := range t.parts {
		if p.Placeholder == name {
			return true
		}
	}
	return false
}

// render builds the key for v and checks it with objectstore.ValidateKey.
func (t keyTemplate) render(v keyValues) (string, error) {
	expanded := objectstore.Expand(t.parts, func(name string) string {
		switch name {
		case "prefix":
			return v.Prefix
		case "host":
			return segmentSafe(v.Host)
		case "name":
			return segmentSafe(v.Name)
		case "uuid":
			return v.UUID
		case "ts":
			return v.Time.UTC().Format(stampLayout)
		}
		s, _ := objectstore.TimeValue(name, v.Time)
		return s
	})
	key := dropEmptySegments(expanded)
	if err := objectstore.ValidateKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// dropEmptySegments removes the empty path segments an empty prefix
// (or any empty value) leaves in a rendered key.
func dropEmptySegments(key string) string {
	segs := strings.Split(key, "/")
	kept := segs[:0]
	for _, s := range segs {
		if s != "" {
			kept = append(kept, s)
		}
	}
	return strings.Join(kept, "/")
}

// segmentSafe keeps a host or log name inside one key segment.
func segmentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}
