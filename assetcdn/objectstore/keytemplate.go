package objectstore

import (
	"crypto/rand"
	"fmt"
	"slices"
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
	parts []TemplatePart
	// usesHash is true when the key needs the content digest, which is
	// only known once the whole body is stored.
	usesHash bool
}

// TemplatePart is a literal run or a {placeholder} of a key template.
type TemplatePart struct {
	Literal     string
	Placeholder string // without the braces; "" for a literal
}

// SplitTemplate cuts a key template into literals and placeholders,
// refusing unclosed or unbalanced braces and names not in known (listed
// in the error). Caddyfile's {uuid} shorthand, expanded by the adapter
// to {http.request.uuid}, is read back as {uuid}.
func SplitTemplate(tmpl string, known ...string) ([]TemplatePart, error) {
	var parts []TemplatePart
	rest := tmpl
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			parts = append(parts, TemplatePart{Literal: rest})
			break
		}
		if open > 0 {
			parts = append(parts, TemplatePart{Literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("key template %q: unclosed '{'", tmpl)
		}
		name := rest[open+1 : open+end]
		if name == "http.request.uuid" {
			name = "uuid"
		}
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("key template %q: unknown placeholder {%s} (known: {%s})", tmpl, name, strings.Join(known, "} {"))
		}
		parts = append(parts, TemplatePart{Placeholder: name})
		rest = rest[open+end+1:]
	}
	for _, p := range parts {
		if strings.ContainsRune(p.Literal, '}') {
			return nil, fmt.Errorf("key template %q: unbalanced '}'", tmpl)
		}
	}
	return parts, nil
}

// KeyValues are the values a key is rendered from.
type KeyValues struct {
	UUID   string
	SHA256 string
	Ext    string
	Time   time.Time
}

// ParseKeyTemplate parses and checks tmpl.
func ParseKeyTemplate(tmpl string) (*KeyTemplate, error) {
	parts, err := SplitTemplate(tmpl, "uuid", "sha256", "ext", "yyyy", "mm", "dd", "HH")
	if err != nil {
		return nil, err
	}
	kt := &KeyTemplate{parts: parts}
	unique := false
	for _, p := range parts {
		unique = unique || p.Placeholder == "uuid" || p.Placeholder == "sha256"
		kt.usesHash = kt.usesHash || p.Placeholder == "sha256"
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
	return Expand(kt.parts, func(name string) string {
		switch name {
		case "uuid":
			return v.UUID
		case "sha256":
			return v.SHA256
		case "ext":
			return v.Ext
		}
		s, _ := TimeValue(name, v.Time)
		return s
	})
}

// Expand writes a split template (SplitTemplate) with each placeholder
// replaced by value(name): the one renderer of every key template, the
// upload keys' and the shipped logs'.
func Expand(parts []TemplatePart, value func(name string) string) string {
	var b strings.Builder
	for _, p := range parts {
		if p.Placeholder == "" {
			b.WriteString(p.Literal)
		} else {
			b.WriteString(value(p.Placeholder))
		}
	}
	return b.String()
}

// timeLayouts are the date placeholders' time.Format layouts.
var timeLayouts = map[string]string{"yyyy": "2006", "mm": "01", "dd": "02", "HH": "15", "MM": "04"}

// TimeValue is the value of a date placeholder at t in UTC: yyyy, mm, dd,
// HH (hour) and MM (minute); ok is false for any other name.
func TimeValue(name string, t time.Time) (value string, ok bool) {
	layout, ok := timeLayouts[name]
	if !ok {
		return "", false
	}
	return t.UTC().Format(layout), true
}

// NewUUID returns a random version 4 UUID.
func NewUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
