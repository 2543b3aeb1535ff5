package logquery

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// op is a --where comparison operator.
type op uint8

const (
	opEq op = iota
	opNe
	opGe
	opLe
	opGt
	opLt
	opContains
)

var opText = [...]string{"=", "!=", ">=", "<=", ">", "<", "~"}

// Cond is one --where condition, `<path><op><value>`, parsed by
// ParseWhere. Its zero value is not usable.
type Cond struct {
	path   []string
	op     op
	value  string
	needle []byte  // value, kept as bytes so that matching allocates nothing
	num    float64 // value as a number, if isNum
	isNum  bool    // value is a JSON number
}

// ParseWhere parses a --where expression: a dotted path, an operator
// (= != >= <= > < ~) and a value, such as `status>=500` or
// `request.host=shop.example.com`. The operator is the leftmost one in
// expr, so the value may contain operator characters (`request.uri~a=b`
// compares with "a=b"). Spaces around the path and the value are
// dropped; a value in double quotes is decoded as a JSON string, which
// keeps its spaces and leading operator characters (`msg="  =x"`). Only
// = and != take an empty value.
func ParseWhere(expr string) (Cond, error) {
	at, o, ok := findOperator(expr)
	if !ok {
		return Cond{}, whereError(expr, "no operator; want one of = != >= <= > < ~")
	}
	field := strings.TrimSpace(expr[:at])
	if field == "" {
		return Cond{}, whereError(expr, fmt.Sprintf("no field before %q", opText[o]))
	}
	path := strings.Split(field, ".")
	for _, seg := range path {
		if seg == "" {
			return Cond{}, whereError(expr, fmt.Sprintf("empty path segment in %q", field))
		}
	}
	value, err := parseValue(strings.TrimSpace(expr[at+len(opText[o]):]))
	if err != nil {
		return Cond{}, whereError(expr, err.Error())
	}
	if value == "" && o != opEq && o != opNe {
		return Cond{}, whereError(expr, fmt.Sprintf("no value after %q", opText[o]))
	}
	return newCond(path, o, value), nil
}

func whereError(expr, problem string) error {
	return fmt.Errorf("--where %q: %s", expr, problem)
}

// findOperator returns the position of the leftmost operator in expr,
// preferring a two-character one at that position. A '!' not followed
// by '=' is not an operator.
func findOperator(expr string) (int, op, bool) {
	for i := 0; i < len(expr); i++ {
		two := i+1 < len(expr) && expr[i+1] == '='
		switch expr[i] {
		case '=':
			return i, opEq, true
		case '~':
			return i, opContains, true
		case '!':
			if two {
				return i, opNe, true
			}
		case '>':
			if two {
				return i, opGe, true
			}
			return i, opGt, true
		case '<':
			if two {
				return i, opLe, true
			}
			return i, opLt, true
		}
	}
	return 0, 0, false
}

// parseValue decodes a value that starts with a double quote as a JSON
// string and returns any other as it is. Values must be UTF-8, since
// the strings they are compared with are.
func parseValue(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		var decoded string
		if err := json.Unmarshal([]byte(s), &decoded); err != nil {
			return "", fmt.Errorf("quoted value %s is not a valid JSON string: %v", s, err)
		}
		return decoded, nil
	}
	if !utf8.ValidString(s) {
		return "", errors.New("value is not valid UTF-8")
	}
	return s, nil
}

func newCond(path []string, o op, value string) Cond {
	c := Cond{path: path, op: o, value: value, needle: []byte(value)}
	if skipNumber(c.needle, 0) == len(c.needle) {
		c.num, _ = strconv.ParseFloat(value, 64)
		c.isNum = true
	}
	return c
}

// String returns the condition as ParseWhere would parse it back, e.g.
// `status>=500`.
func (c Cond) String() string {
	field := strings.Join(c.path, ".")
	if strings.HasSuffix(field, "!") && c.op == opEq {
		field += " " // or `a!=` would read as a != condition
	}
	return field + opText[c.op] + quoteIfNeeded(c.value)
}

// quoteIfNeeded quotes a value that ParseWhere would otherwise trim,
// decode, or read as part of the operator.
func quoteIfNeeded(s string) string {
	if s != strings.TrimSpace(s) || s != "" && strings.ContainsRune(`"=!<>~`, rune(s[0])) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s) // a string always encodes
		return strings.TrimSuffix(buf.String(), "\n")
	}
	return s
}

// Match reports whether line's field at the condition's path satisfies
// it:
//
//   - = and != compare a Number numerically if the value is a JSON
//     number (status=200 matches 200 and 2e2), a String by its decoded
//     text, and anything else, or a Number with a non-numeric value, by
//     its JSON text (flag=true, user=null).
//   - > >= < <= compare a Number numerically if the value is a JSON
//     number, and a String byte by byte with the value, so RFC 3339
//     times and zero-padded numbers order as text. Any other field is
//     false.
//   - ~ is true if the value is a substring of a String's decoded text
//     or of any other field's JSON text (size~00).
//
// A field that is missing, or that a malformed line hides, satisfies
// only !=, as jq's `.x != 5` does. Numbers are compared as float64, so
// integers beyond 2^53 compare approximately.
func (c Cond) Match(line []byte) bool {
	v, ok := Lookup(line, c.path)
	if !ok {
		return c.op == opNe
	}
	switch c.op {
	case opEq:
		return c.equals(v)
	case opNe:
		return !c.equals(v)
	case opContains:
		return bytes.Contains(v.text(), c.needle)
	}
	order, ok := c.compare(v)
	switch {
	case !ok:
		return false
	case c.op == opGe:
		return order >= 0
	case c.op == opLe:
		return order <= 0
	case c.op == opGt:
		return order > 0
	}
	return order < 0
}

func (c Cond) equals(v Value) bool {
	if v.kind == Number && c.isNum {
		f, _ := v.Float()
		return f == c.num
	}
	return string(v.text()) == c.value
}

// compare orders v against the value, reporting false if they do not
// order: v is neither a String nor a Number with a numeric value.
func (c Cond) compare(v Value) (int, bool) {
	switch {
	case v.kind == Number && c.isNum:
		f, _ := v.Float()
		return cmp.Compare(f, c.num), true
	case v.kind == String:
		return bytes.Compare(v.text(), c.needle), true
	}
	return 0, false
}

// Conds is the conjunction of several --where conditions.
type Conds []Cond

// Match reports whether line satisfies every condition; an empty Conds
// matches every line.
func (cs Conds) Match(line []byte) bool {
	for _, c := range cs {
		if !c.Match(line) {
			return false
		}
	}
	return true
}
