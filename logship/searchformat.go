package logship

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddylb/caddylb/logship/logquery"
)

// formatJSON prints the line as it was shipped.
func formatJSON(dst []byte, l *searchLine) []byte {
	dst = append(dst, l.line...)
	return append(dst, '\n')
}

// formatText prints one readable line: the time (UTC) and the node,
// then for an access log the status, method, host and URI, duration,
// client and upstream; for a shipped file line the file and the line;
// for any other entry its level, logger and message, then its other
// fields as JSON.
func formatText(dst []byte, l *searchLine) []byte {
	dst = l.ts.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	dst = appendField(dst, l.host) // from a key: made visible too
	line := l.line
	str := func(path ...string) string {
		v, ok := logquery.Lookup(line, path)
		if !ok {
			return ""
		}
		return v.String()
	}
	switch {
	case has(line, "request"):
		dst = appendField(dst, str("status"))
		dst = appendField(dst, str("request", "method"))
		dst = appendField(dst, str("request", "host")+str("request", "uri"))
		if d, ok := logquery.Lookup(line, []string{"duration"}); ok {
			if f, ok := d.Float(); ok {
				dst = appendField(dst, time.Duration(f*float64(time.Second)).Round(time.Microsecond).String())
			}
		}
		dst = appendField(dst, str("request", "client_ip"))
		if up := str("sticky_upstream"); up != "" {
			dst = appendField(dst, "-> "+up)
		}
	case has(line, "file") && has(line, "line"):
		dst = appendField(dst, str("file")+":")
		if p := str("part"); p != "" {
			more := ""
			if str("more") == "true" {
				more = "+"
			}
			dst = appendField(dst, "[part "+p+more+"]")
		}
		dst = appendField(dst, str("line"))
	default:
		dst = appendField(dst, strings.ToUpper(str("level")))
		dst = appendField(dst, str("logger"))
		dst = appendField(dst, str("msg"))
		dst = appendRest(dst, line)
	}
	return append(dst, '\n')
}

func has(line []byte, member string) bool {
	_, ok := logquery.Lookup(line, []string{member})
	return ok
}

// appendField appends " s" with control characters made visible, so a
// field cannot start a new line or move the cursor of the terminal.
func appendField(dst []byte, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, ' ')
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 || (r >= 0x80 && r < 0xa0) {
			q := strconv.QuoteRune(r)
			dst = append(dst, q[1:len(q)-1]...)
			continue
		}
		dst = append(dst, string(r)...)
	}
	return dst
}

// appendRest appends the fields other than ts, level, logger and msg as
// one JSON object, keys sorted.
func appendRest(dst, line []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return appendField(dst, string(line)) // not JSON: as it is
	}
	for _, k := range []string{"ts", "level", "logger", "msg"} {
		delete(m, k)
	}
	if len(m) == 0 {
		return dst
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, _ := json.Marshal(k)
		b.Write(kj)
		b.WriteByte(':')
		b.Write(m[k])
	}
	b.WriteByte('}')
	return appendField(dst, b.String())
}
