package logquery

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Kind is the JSON type of a Value.
type Kind uint8

// The kinds of JSON value. Invalid is the kind of the zero Value.
const (
	Invalid Kind = iota
	String
	Number
	Bool
	Null
	Object
	Array
)

var kindNames = [...]string{"invalid", "string", "number", "bool", "null", "object", "array"}

// String returns the kind's name, e.g. "number".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// maxDepth is how deeply objects and arrays may nest, the same limit as
// encoding/json's, so that a hostile line cannot exhaust the stack.
const maxDepth = 10000

// Value is one JSON value inside a line, as found by Lookup. It refers
// to the line's bytes and is valid only as long as they are unchanged.
type Value struct {
	raw  []byte
	kind Kind
}

// Kind returns the value's JSON type.
func (v Value) Kind() Kind { return v.kind }

// Raw returns the value's JSON text as it appears in the line, quotes
// and escapes included.
func (v Value) Raw() []byte { return v.raw }

// String returns a String value decoded, escapes resolved and invalid
// UTF-8 replaced by U+FFFD exactly as encoding/json does, and any other
// value's JSON text.
func (v Value) String() string {
	return string(v.text())
}

// Float returns a Number value as the nearest float64 (±Inf if it is
// out of range). It reports false for every other kind, even a String
// holding digits.
func (v Value) Float() (float64, bool) {
	if v.kind != Number {
		return 0, false
	}
	f, _ := strconv.ParseFloat(string(v.raw), 64)
	return f, true
}

// text is String's result as bytes; for a String value without escapes
// it is a slice of the line, so comparing it allocates nothing.
func (v Value) text() []byte {
	if v.kind == String {
		return decodeString(v.raw)
	}
	return v.raw
}

// decodeString decodes the quoted JSON string raw. Only strings with a
// backslash or invalid UTF-8 are handed to encoding/json.
func decodeString(raw []byte) []byte {
	content := raw[1 : len(raw)-1]
	if bytes.IndexByte(content, '\\') < 0 && utf8.Valid(content) {
		return content
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return content // unreachable for strings skipString accepted
	}
	return []byte(s)
}

// Lookup returns the value at path in line, a JSON object. Each path
// segment names an object member, matched exactly against the decoded
// member name; on an array, a segment of decimal digits is an index
// from 0. If an object has a member name twice, the first one wins.
// An empty path returns the whole object.
//
// Lookup reports false if line is not a JSON object, the path does not
// exist, or the line is malformed before the value's end. It does not
// look at the rest of the line after the value.
func Lookup(line []byte, path []string) (Value, bool) {
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return Value{}, false
	}
	for depth, seg := range path {
		switch {
		case i < len(line) && line[i] == '{':
			i = findMember(line, i, seg, depth+1)
		case i < len(line) && line[i] == '[':
			i = findElement(line, i, seg, depth+1)
		default:
			return Value{}, false
		}
		if i < 0 {
			return Value{}, false
		}
	}
	end, kind := skipValue(line, i, len(path)+1)
	if kind == Invalid {
		return Value{}, false
	}
	return Value{raw: line[i:end], kind: kind}, true
}

// findMember returns where the value of the first member called name
// starts in the object at b[i], or -1.
func findMember(b []byte, i int, name string, depth int) int {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return -1
	}
	for {
		key, at := readKey(b, i)
		if at < 0 {
			return -1
		}
		if string(decodeString(key)) == name {
			return at
		}
		end, kind := skipValue(b, at, depth+1)
		if kind == Invalid {
			return -1
		}
		var more bool
		if i, more = afterValue(b, end, '}'); !more {
			return -1
		}
	}
}

// findElement returns where element index of the array at b[i] starts,
// or -1 if index is not decimal digits or the array is shorter.
func findElement(b []byte, i int, index string, depth int) int {
	n, ok := parseIndex(index)
	if !ok {
		return -1
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return -1
	}
	for ; ; n-- {
		if n == 0 {
			return i
		}
		end, kind := skipValue(b, i, depth+1)
		if kind == Invalid {
			return -1
		}
		var more bool
		if i, more = afterValue(b, end, ']'); !more {
			return -1
		}
	}
}

// parseIndex parses a path segment as an array index.
func parseIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// skipValue returns the end of the JSON value starting at b[i] and its
// kind, or -1 and Invalid if it is malformed or, being an object or an
// array at depth, nests too deeply.
func skipValue(b []byte, i, depth int) (int, Kind) {
	if i >= len(b) || depth > maxDepth && (b[i] == '{' || b[i] == '[') {
		return -1, Invalid
	}
	var end int
	var kind Kind
	switch c := b[i]; {
	case c == '"':
		end, kind = skipString(b, i), String
	case c == '{':
		end, kind = skipObject(b, i, depth), Object
	case c == '[':
		end, kind = skipArray(b, i, depth), Array
	case c == '-' || c >= '0' && c <= '9':
		end, kind = skipNumber(b, i), Number
	case c == 't':
		end, kind = skipLiteral(b, i, "true"), Bool
	case c == 'f':
		end, kind = skipLiteral(b, i, "false"), Bool
	case c == 'n':
		end, kind = skipLiteral(b, i, "null"), Null
	default:
		return -1, Invalid
	}
	if end < 0 {
		return -1, Invalid
	}
	return end, kind
}

// skipObject returns the end of the object at b[i], or -1.
func skipObject(b []byte, i, depth int) int {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		_, at := readKey(b, i)
		if at < 0 {
			return -1
		}
		end, kind := skipValue(b, at, depth+1)
		if kind == Invalid {
			return -1
		}
		var more bool
		if i, more = afterValue(b, end, '}'); !more {
			return i
		}
	}
}

// skipArray returns the end of the array at b[i], or -1.
func skipArray(b []byte, i, depth int) int {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		end, kind := skipValue(b, i, depth+1)
		if kind == Invalid {
			return -1
		}
		var more bool
		if i, more = afterValue(b, end, ']'); !more {
			return i
		}
	}
}

// readKey reads `"name" :` at b[i] and returns the quoted name and where
// the member's value starts, or -1.
func readKey(b []byte, i int) ([]byte, int) {
	if i >= len(b) || b[i] != '"' {
		return nil, -1
	}
	end := skipString(b, i)
	if end < 0 {
		return nil, -1
	}
	colon := skipSpace(b, end)
	if colon >= len(b) || b[colon] != ':' {
		return nil, -1
	}
	return b[i:end], skipSpace(b, colon+1)
}

// afterValue reads what follows a member or element ending at b[i]: a
// comma, after which it returns the start of the next one and true, or
// the closing bracket, after which it returns the end of the container
// and false. It returns -1 and false for anything else.
func afterValue(b []byte, i int, closing byte) (int, bool) {
	i = skipSpace(b, i)
	switch {
	case i >= len(b):
		return -1, false
	case b[i] == ',':
		return skipSpace(b, i+1), true
	case b[i] == closing:
		return i + 1, false
	}
	return -1, false
}

// plainStringByte marks the bytes that may appear unescaped in a JSON
// string and need no attention: not '"', not '\\', not a control byte.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipString returns the end of the string whose opening quote is
// b[i], or -1 (RFC 8259, section 7).
func skipString(b []byte, i int) int {
	j := i + 1
	for {
		for j < len(b) && plainStringByte[b[j]] {
			j++
		}
		switch {
		case j >= len(b) || b[j] < 0x20:
			return -1
		case b[j] == '"':
			return j + 1
		}
		if j = skipEscape(b, j); j < 0 {
			return -1
		}
	}
}

// skipEscape returns the end of the escape sequence at b[j] == '\\'.
func skipEscape(b []byte, j int) int {
	if j+1 >= len(b) {
		return -1
	}
	switch b[j+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return j + 2
	case 'u':
		if j+6 > len(b) {
			return -1
		}
		for _, c := range b[j+2 : j+6] {
			if !isHex(c) {
				return -1
			}
		}
		return j + 6
	}
	return -1
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// skipNumber returns the end of the number at b[i], or -1: an optional
// minus, an integer without leading zeros, an optional fraction and an
// optional exponent (RFC 8259, section 6).
func skipNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i = skipDigits(b, i+1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		i = skipDigits(b, i)
	}
	return i
}

// skipDigits returns the end of the one or more digits at b[i], or -1.
func skipDigits(b []byte, i int) int {
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == start {
		return -1
	}
	return i
}

// skipLiteral returns the end of lit at b[i], or -1.
func skipLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// skipSpace returns the position of the first non-whitespace byte at or
// after b[i] (RFC 8259 whitespace: space, tab, LF, CR).
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
