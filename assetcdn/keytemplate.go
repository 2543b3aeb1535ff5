package assetcdn

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"
)

// KeyTemplate renders the server-generated object key of an upload. The
// client's filename never becomes part of the path; only its extension
// (normalized) can, through {ext}.
//
// Placeholders: {uuid} (random, RFC 9562 version 4), {sha256} (hex digest
// of the content), {ext} (".png" or ""), {yyyy} {mm} {dd} {HH} (UTC
// upload time). A template must contain {uuid} or {sha256} so that keys
// never collide.
type KeyTemplate struct {
	parts []keyPart
	// usesHash is true when the key needs the content digest, which is
	// only known once the whole body is stored.
	usesHash bool
}

type keyPart struct {
	literal     string
	placeholder string
}

// KeyValues are the values a key is rendered from.
type KeyValues struct {
	UUID   string
	SHA256 string
	Ext    string
	Time   time.Time
}

var keyPlaceholders = map[string]bool{
	"uuid": true, "sha256": true, "ext": true,
	"yyyy": true, "mm": true, "dd": true, "HH": true,
}

// ParseKeyTemplate parses and checks tmpl.
func ParseKeyTemplate(tmpl string) (*KeyTemplate, error) {
	kt := new(KeyTemplate)
	rest := tmpl
	unique := false
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			kt.parts = append(kt.parts, keyPart{literal: rest})
			break
		}
		if open > 0 {
			kt.parts = append(kt.parts, keyPart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("key template %q: unclosed '{'", tmpl)
		}
		name := rest[open+1 : open+end]
		if name == "http.request.uuid" {
			// The Caddyfile adapter expands the {uuid} shorthand.
			name = "uuid"
		}
		if !keyPlaceholders[name] {
			return nil, fmt.Errorf("key template %q: unknown placeholder {%s} (known: {uuid} {sha256} {ext} {yyyy} {mm} {dd} {HH})", tmpl, name)
		}
		kt.parts = append(kt.parts, keyPart{placeholder: name})
		unique = unique || name == "uuid" || name == "sha256"
		kt.usesHash = kt.usesHash || name == "sha256"
		rest = rest[open+end+1:]
	}
	if strings.ContainsRune(tmpl, '}') && strings.Count(tmpl, "{") != strings.Count(tmpl, "}") {
		return nil, fmt.Errorf("key template %q: unbalanced '}'", tmpl)
	}
	if !unique {
		return nil, fmt.Errorf("key template %q: must contain {uuid} or {sha256}, or uploads would overwrite each other", tmpl)
	}
	sample := kt.Render(KeyValues{UUID: NewUUID(), SHA256: strings.Repeat("0", 64), Ext: ".png", Time: time.Now()})
	if err := ValidateKey(sample); err != nil {
		return nil, fmt.Errorf("key template %q: %v", tmpl, err)
	}
	return kt, nil
}

// UsesHash reports whether the key contains {sha256}.
func (kt *KeyTemplate) UsesHash() bool { return kt.usesHash }

// Render fills in the placeholders.
func (kt *KeyTemplate) Render(v KeyValues) string {
	var b strings.Builder
	t := v.Time.UTC()
	for _, p := range kt.parts {
		switch p.placeholder {
		case "":
			b.WriteString(p.literal)
		case "uuid":
			b.WriteString(v.UUID)
		case "sha256":
			b.WriteString(v.SHA256)
		case "ext":
			b.WriteString(v.Ext)
		case "yyyy":
			fmt.Fprintf(&b, "%04d", t.Year())
		case "mm":
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case "dd":
			fmt.Fprintf(&b, "%02d", t.Day())
		case "HH":
			fmt.Fprintf(&b, "%02d", t.Hour())
		}
	}
	return b.String()
}

// NewUUID returns a random version 4 UUID.
func NewUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
