package logship

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// keyLayout reads and lists the object keys a key template makes under
// one prefix: it tells a shipped file's node, log name and start time
// from its key, and which key prefixes hold the files of a time window,
// so that a search lists those and not the whole bucket.
type keyLayout struct {
	parts   []objectstore.TemplatePart // the template with {prefix} filled in
	pattern *regexp.Regexp
	hostSeg bool // {host} is a whole key segment: nodes can be listed as directories
}

// shippedObject is one shipped file found by a listing.
type shippedObject struct {
	key, host, name string
	start           time.Time // the spool file's creation ({ts})
}

func newKeyLayout(template, prefix string) (*keyLayout, error) {
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("prefix %q: braces are not allowed", prefix)
	}
	if _, err := parseKeyTemplate(template); err != nil {
		return nil, err
	}
	// Fill in the prefix, then drop empty segments, as render does.
	filled := dropEmptySegments(strings.ReplaceAll(template, "{prefix}", prefix))
	parts, err := objectstore.SplitTemplate(filled, "host", "name", "uuid", "ts", "yyyy", "mm", "dd", "HH", "MM")
	if err != nil {
		return nil, err
	}
	l := &keyLayout{parts: parts}
	var re strings.Builder
	re.WriteString("^")
	named := map[string]bool{}
	for i, p := range parts {
		if p.Placeholder == "" {
			re.WriteString(regexp.QuoteMeta(p.Literal))
			continue
		}
		if p.Placeholder == "host" {
			before := i == 0 || strings.HasSuffix(parts[i-1].Literal, "/")
			after := i+1 < len(parts) && strings.HasPrefix(parts[i+1].Literal, "/")
			l.hostSeg = l.hostSeg || before && after
		}
		expr := placeholderPatterns[p.Placeholder]
		if !named[p.Placeholder] {
			named[p.Placeholder] = true
			expr = "(?P<" + p.Placeholder + ">" + expr + ")"
		}
		re.WriteString(expr)
	}
	re.WriteString("$")
	l.pattern, err = regexp.Compile(re.String())
	return l, err
}

var placeholderPatterns = map[string]string{
	"host": `[^/]+?`, "name": `[^/]+?`,
	"uuid": `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`,
	"ts":   `[0-9]{8}T[0-9]{6}\.[0-9]{3}Z`,
	"yyyy": `[0-9]{4}`, "mm": `[0-9]{2}`, "dd": `[0-9]{2}`, "HH": `[0-9]{2}`, "MM": `[0-9]{2}`,
}

// parse reads a listed key; ok is false for a key the template does not
// make (other objects in the bucket).
func (l *keyLayout) parse(key string) (shippedObject, bool) {
	m := l.pattern.FindStringSubmatch(key)
	if m == nil {
		return shippedObject{}, false
	}
	o := shippedObject{key: key}
	for i, name := range l.pattern.SubexpNames() {
		switch name {
		case "host":
			o.host = m[i]
		case "name":
			o.name = m[i]
		case "ts":
			t, err := time.Parse(stampLayout, m[i])
			if err != nil {
				return shippedObject{}, false
			}
			o.start = t
		}
	}
	return o, true
}

// listPrefix renders the template up to the first placeholder that
// known does not give: the key prefix that holds every key with those
// values. It also says whether rendering stopped at {host}.
func (l *keyLayout) listPrefix(known map[string]string) (prefix string, atHost bool) {
	var b strings.Builder
	for _, p := range l.parts {
		if p.Placeholder == "" {
			b.WriteString(p.Literal)
			continue
		}
		v, ok := known[p.Placeholder]
		if !ok {
			return b.String(), p.Placeholder == "host"
		}
		b.WriteString(v)
	}
	return b.String(), false
}

// windowPrefixes are the key prefixes to list for the files started in
// [from, to]: one per day the window covers whole, one per hour of its
// partial days, for each host (listed as directories when hosts is
// empty and the template allows). Duplicates (a template without hours)
// are merged.
func (l *keyLayout) windowPrefixes(ctx context.Context, store objectstore.Store, hosts []string, name string, from, to time.Time) ([]string, error) {
	from, to = from.UTC(), to.UTC()
	base := map[string]string{}
	if name != "" {
		base["name"] = segmentSafe(name)
	}
	if len(hosts) == 0 {
		p, atHost := l.listPrefix(base)
		if lister, ok := store.(objectstore.DirLister); ok && atHost && l.hostSeg {
			dirs, err := lister.ListDirs(ctx, p)
			if err != nil {
				return nil, err
			}
			for _, d := range dirs {
				// A directory no writer made ("..", a control character)
				// would fail the listing of the whole search.
				if objectstore.ValidateKey(p+d+"/x") == nil && segmentSafe(d) == d {
					hosts = append(hosts, d)
				}
			}
			if len(hosts) == 0 {
				return nil, nil // no node shipped under the prefix
			}
		}
	}
	if len(hosts) == 0 {
		hosts = []string{""} // {host} unknown: list past it
	}
	seen := map[string]bool{}
	var out []string
	add := func(known map[string]string) {
		p, _ := l.listPrefix(known)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, host := range hosts {
		for day := from.Truncate(24 * time.Hour); !day.After(to); day = day.Add(24 * time.Hour) {
			known := maps.Clone(base)
			if host != "" {
				known["host"] = segmentSafe(host)
			}
			for _, k := range []string{"yyyy", "mm", "dd"} {
				known[k], _ = objectstore.TimeValue(k, day)
			}
			if !day.Before(from) && !day.Add(24*time.Hour).After(to) {
				add(known)
				continue
			}
			h := from.Truncate(time.Hour)
			if h.Before(day) {
				h = day
			}
			for ; h.Before(day.Add(24*time.Hour)) && !h.After(to); h = h.Add(time.Hour) {
				hk := maps.Clone(known)
				hk["HH"], _ = objectstore.TimeValue("HH", h)
				add(hk)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
