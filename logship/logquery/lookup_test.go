package logquery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// accessLogLine is a Caddy access log entry as the default JSON encoder
// writes it.
const accessLogLine = `{"level":"info","ts":1764660826.590123,"logger":"http.log.access.log0","msg":"handled request",` +
	`"request":{"remote_ip":"203.0.113.7","remote_port":"52814","client_ip":"203.0.113.7","proto":"HTTP/2.0",` +
	`"method":"GET","host":"shop.example.com","uri":"/cart?item=1234","headers":{"Accept":` +
	`["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],"User-Agent":` +
	`["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"]},"tls":{"resumed":false,` +
	`"version":772,"cipher_suite":4865,"proto":"h2","server_name":"shop.example.com"}},"bytes_read":0,` +
	`"user_id":"","duration":0.001234567,"size":5120,"status":200,"resp_headers":{"Server":["Caddy"],` +
	`"Content-Type":["text/html; charset=utf-8"],"Alt-Svc":["h3=\":443\"; ma=2592000"]}}`

func TestLookup(t *testing.T) {
	tests := []struct {
		name, line, path string // path "" is the empty path
		wantKind         Kind   // Invalid: want false
		wantRaw          string
		wantString       string // when different from wantRaw
	}{
		{"top-level number", accessLogLine, "status", Number, "200", ""},
		{"nested string", accessLogLine, "request.host", String, `"shop.example.com"`, "shop.example.com"},
		{"array index", accessLogLine, "request.headers.User-Agent.0", String,
			`"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"`,
			"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
		{"escaped quotes in value", accessLogLine, "resp_headers.Alt-Svc.0", String,
			`"h3=\":443\"; ma=2592000"`, `h3=":443"; ma=2592000`},
		{"empty string", accessLogLine, "user_id", String, `""`, ""},
		{"bool", accessLogLine, "request.tls.resumed", Bool, "false", ""},
		{"object", `{"a":{"b":[1, 2]} }`, "a", Object, `{"b":[1, 2]}`, ""},
		{"array", `{"a":{"b":[1, 2]}}`, "a.b", Array, `[1, 2]`, ""},
		{"second element", `{"a":[1,[2,3],{"c":4}]}`, "a.1.1", Number, "3", ""},
		{"member of element", `{"a":[1,[2,3],{"c":4}]}`, "a.2.c", Number, "4", ""},
		{"index past end", `{"a":[1,2]}`, "a.2", Invalid, "", ""},
		{"index into empty", `{"a":[]}`, "a.0", Invalid, "", ""},
		{"index not a number", `{"a":[1,2]}`, "a.x", Invalid, "", ""},
		{"negative index", `{"a":[1,2]}`, "a.-1", Invalid, "", ""},
		{"huge index", `{"a":[1,2]}`, "a.99999999999999999999", Invalid, "", ""},
		{"digits name a member", `{"a":{"0":"zero"}}`, "a.0", String, `"zero"`, "zero"},
		{"path through a number", `{"a":1}`, "a.b", Invalid, "", ""},
		{"path through a string", `{"a":"{\"b\":1}"}`, "a.b", Invalid, "", ""},
		{"missing", accessLogLine, "request.nope", Invalid, "", ""},
		{"case-sensitive", accessLogLine, "Status", Invalid, "", ""},
		{"empty path", ` {"a":1} `, "", Object, `{"a":1}`, ""},
		{"empty member names", `{"":{"":1}}`, ".", Number, "1", ""}, // path ["", ""]
		{"null", `{"a":null}`, "a", Null, "null", ""},
		{"true", `{"a":true}`, "a", Bool, "true", ""},
		{"negative exponent number", `{"a":-1.5e-3}`, "a", Number, "-1.5e-3", ""},
		{"zero", `{"a":0}`, "a", Number, "0", ""},
		{"escaped member name", `{"a\u0062":1}`, "ab", Number, "1", ""},
		{"escaped quote in member name", `{"a\"b":1}`, `a"b`, Number, "1", ""},
		{"unescaped match of escaped name", `{"a\u0062":1}`, `a\u0062`, Invalid, "", ""},
		{"escapes decoded", `{"a":"x\n\\\/\u00e9\ud83d\ude00"}`, "a", String,
			`"x\n\\\/\u00e9\ud83d\ude00"`, "x\n\\/é😀"},
		{"fake member inside string", `{"msg":"x\",\"status\":500","status":200}`, "status", Number, "200", ""},
		{"fake member after backslashes", `{"msg":"\\\",\"status\":500\\","status":201}`, "status", Number, "201", ""},
		{"backslash before closing quote", `{"msg":"a\\","status":202}`, "status", Number, "202", ""},
		{"nested member not at top", `{"request":{"status":500},"status":200}`, "status", Number, "200", ""},
		{"duplicate: first wins", `{"a":1,"a":2}`, "a", Number, "1", ""},
		{"duplicate via escape: first wins", `{"a":1,"\u0061":2}`, "a", Number, "1", ""},
		{"whitespace", " \t\r\n{ \"a\" :\n[ 1 ,\t{ \"b\" : true } ] }", "a.1.b", Bool, "true", ""},
		{"malformed after value", `{"a":1,}`, "a", Number, "1", ""},
		{"invalid UTF-8 replaced", "{\"a\":\"x\xffy\"}", "a", String, "\"x\xffy\"", "x\uFFFDy"},

		{"empty line", ``, "a", Invalid, "", ""},
		{"blank line", `   `, "", Invalid, "", ""},
		{"array line", `[{"a":1}]`, "0.a", Invalid, "", ""},
		{"string line", `"a"`, "", Invalid, "", ""},
		{"number line", `5`, "", Invalid, "", ""},
		{"null line", `null`, "", Invalid, "", ""},
		{"text line", `level=info msg=x`, "level", Invalid, "", ""},
		{"unterminated object", `{`, "a", Invalid, "", ""},
		{"unterminated key", `{"a`, "a", Invalid, "", ""},
		{"no colon", `{"a" 1}`, "a", Invalid, "", ""},
		{"no value", `{"a":}`, "a", Invalid, "", ""},
		{"cut after colon", `{"a":`, "a", Invalid, "", ""},
		{"unquoted key", `{a:1}`, "a", Invalid, "", ""},
		{"single-quoted key", `{'a':1}`, "a", Invalid, "", ""},
		{"trailing comma", `{"x":1,}`, "a", Invalid, "", ""},
		{"missing comma", `{"x":1 "a":2}`, "a", Invalid, "", ""},
		{"bad literal", `{"x":tru,"a":1}`, "a", Invalid, "", ""},
		{"bad literal case", `{"x":True,"a":1}`, "a", Invalid, "", ""},
		{"cut literal", `{"a":nul`, "a", Invalid, "", ""},
		{"leading zero", `{"x":01,"a":1}`, "a", Invalid, "", ""},
		{"bare minus", `{"x":-,"a":1}`, "a", Invalid, "", ""},
		{"empty fraction", `{"x":1.,"a":1}`, "a", Invalid, "", ""},
		{"empty exponent", `{"x":1e,"a":1}`, "a", Invalid, "", ""},
		{"plus sign", `{"x":+1,"a":1}`, "a", Invalid, "", ""},
		{"bad value", `{"a":+1}`, "a", Invalid, "", ""},
		{"bad escape", `{"x":"\q","a":1}`, "a", Invalid, "", ""},
		{"short unicode escape", `{"x":"\u12","a":1}`, "a", Invalid, "", ""},
		{"non-hex unicode escape", `{"x":"\u12g4","a":1}`, "a", Invalid, "", ""},
		{"escape at end", `{"a":"\`, "a", Invalid, "", ""},
		{"unterminated string value", `{"a":"abc`, "a", Invalid, "", ""},
		{"control byte in string", "{\"x\":\"a\tb\",\"a\":1}", "a", Invalid, "", ""},
		{"missing array comma", `{"x":[1 2],"a":1}`, "a", Invalid, "", ""},
		{"array trailing comma", `{"x":[1,],"a":1}`, "a", Invalid, "", ""},
		{"key without value in object", `{"x":{"y"},"a":1}`, "a", Invalid, "", ""},
		{"mismatched brackets", `{"x":[},"a":1}`, "a", Invalid, "", ""},
		{"mismatched brace", `{"x":{],"a":1}`, "a", Invalid, "", ""},
		{"value cut short", `{"a":[1,2`, "a", Invalid, "", ""},
		{"object value cut short", `{"a":{"b":1`, "a", Invalid, "", ""},
		{"element before malformed end", `{"a":[1,2`, "a.0", Number, "1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path []string
			if tt.path != "" {
				path = strings.Split(tt.path, ".")
			}
			v, ok := Lookup([]byte(tt.line), path)
			if ok != (tt.wantKind != Invalid) {
				t.Fatalf("Lookup(%q, %q) ok = %v, want %v (value %s)", tt.line, path, ok, !ok, v.Raw())
			}
			wantString := tt.wantString
			if wantString == "" && tt.wantKind != String {
				wantString = tt.wantRaw
			}
			if v.Kind() != tt.wantKind || string(v.Raw()) != tt.wantRaw || v.String() != wantString {
				t.Errorf("Lookup(%q, %q) = %v %q %q, want %v %q %q", tt.line, path,
					v.Kind(), v.Raw(), v.String(), tt.wantKind, tt.wantRaw, wantString)
			}
		})
	}
}

func TestLookupDeepNesting(t *testing.T) {
	// 5000 nested objects around 4999 nested arrays: 9999 levels, and
	// one more for the array in each test below.
	const objects, arrays = 5000, maxDepth - 5000 - 1
	line := strings.Repeat(`{"a":`, objects-1) + `{"a":"deep","b":` + strings.Repeat("[", arrays) +
		"%s" + strings.Repeat("]", arrays) + "}" + strings.Repeat("}", objects-1)
	deepest := []byte(fmt.Sprintf(line, "[7]"))
	tooDeep := []byte(fmt.Sprintf(line, "[[]]"))
	if !json.Valid(deepest) || json.Valid(tooDeep) {
		t.Fatal("encoding/json's nesting limit is not the test's")
	}

	path := slices.Repeat([]string{"a"}, objects)
	if v, ok := Lookup(deepest, path); !ok || v.String() != "deep" {
		t.Errorf("Lookup(%d × a) = %q, %v; want deep", objects, v.Raw(), ok)
	}
	path = append(path[:objects-1], "b")
	path = append(path, slices.Repeat([]string{"0"}, arrays+1)...)
	if v, ok := Lookup(deepest, path); !ok || v.String() != "7" {
		t.Errorf("Lookup(a…b.0…0) %d deep = %q, %v; want 7", len(path), v.Raw(), ok)
	}
	if v, ok := Lookup(tooDeep, []string{"a"}); ok {
		t.Errorf("Lookup past %d levels = %q, want false (too deep)", maxDepth, v.Raw())
	}
	tooDeep = []byte(`{"x":` + strings.Repeat("[", 1_000_000) + strings.Repeat("]", 1_000_000) + `,"a":1}`)
	if v, ok := Lookup(tooDeep, []string{"a"}); ok {
		t.Errorf("Lookup past a million nested arrays = %q, want false (too deep)", v.Raw())
	}
}

func TestValueFloat(t *testing.T) {
	line := []byte(`{"n":-2.5e2,"s":"7","big":1e400}`)
	for _, tt := range []struct {
		path   string
		want   float64
		wantOK bool
	}{{"n", -250, true}, {"s", 0, false}, {"big", float64Inf(), true}} {
		v, _ := Lookup(line, []string{tt.path})
		if f, ok := v.Float(); f != tt.want || ok != tt.wantOK {
			t.Errorf("%s: Float() = %v, %v; want %v, %v", tt.path, f, ok, tt.want, tt.wantOK)
		}
	}
}

func float64Inf() float64 { f, _ := strconv.ParseFloat("+Inf", 64); return f }

func TestLookupDoesNotAllocate(t *testing.T) {
	line := []byte(accessLogLine)
	path := []string{"request", "headers", "User-Agent", "0"}
	if n := testing.AllocsPerRun(100, func() { Lookup(line, path) }); n != 0 {
		t.Errorf("Lookup allocates %v times per line, want 0", n)
	}
}

// crossCheckLines are valid and invalid JSON lines that TestLookupAgainstEncodingJSON and
// FuzzLookup compare with encoding/json.
var crossCheckLines = []string{
	accessLogLine,
	`{}`,
	`{"a":{"b":[{"c":null},true,false,-0.5e+7,"x\"y"]},"":{"":[]}}`,
	`{"a":1,"a":{"b":2},"b":[[],[{}]]}`,
	`{"\u00e9t\u00e9":"\ud83d\ude00","\/":"\b\f\n\r\t"}`,
	"{\"a\xff\":\"\xfe\",\"b\":\"\\ud800\"}",
	` { "spaced" : [ 1 , 2 ] , "x" : { } } `,
	`[1,2]`, `"s"`, `{"a":1,}`, `{"a":[}`, `{"a`,
}

func TestLookupAgainstEncodingJSON(t *testing.T) {
	for _, line := range crossCheckLines {
		checkAgainstEncodingJSON(t, []byte(line))
	}
}

func FuzzLookup(f *testing.F) {
	for _, line := range crossCheckLines {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkAgainstEncodingJSON(t, line)
	})
}

// checkAgainstEncodingJSON looks up paths to the values that
// encoding/json finds in line, and a few that do not exist, and
// compares what Lookup finds. For a line encoding/json rejects it only
// checks that Lookup does not panic.
func checkAgainstEncodingJSON(t *testing.T, line []byte) {
	t.Helper()
	if !json.Valid(line) {
		Lookup(line, nil)
		Lookup(line, []string{"a"})
		Lookup(line, []string{"a", "0", "b"})
		return
	}
	doc, err := decodeFirstWins(json.NewDecoder(bytes.NewReader(line)))
	if err != nil {
		t.Fatalf("decoding a line json.Valid accepts: %v", err)
	}
	if _, isObject := doc.(*orderedObject); !isObject {
		if v, ok := Lookup(line, nil); ok {
			t.Errorf("Lookup(%q, nil) = %s, want false for a non-object", line, v.Raw())
		}
		return
	}
	budget := 200
	walk(doc, nil, &budget, func(path []string, want any) {
		v, ok := Lookup(line, path)
		if !ok {
			t.Errorf("Lookup(%q, %q) = false, want %v", line, path, want)
			return
		}
		if problem := compareDecoded(v, want); problem != "" {
			t.Errorf("Lookup(%q, %q) = %v %s: %s", line, path, v.Kind(), v.Raw(), problem)
		}
	}, func(path []string) {
		if v, ok := Lookup(line, path); ok {
			t.Errorf("Lookup(%q, %q) = %s, want false", line, path, v.Raw())
		}
	})
}

// orderedObject is a JSON object decoded with the first of duplicate
// members kept, as Lookup does (a map[string]any keeps the last).
type orderedObject struct {
	names   []string
	members map[string]any
}

// decodeFirstWins decodes the next value from dec with json.Number for
// numbers and *orderedObject for objects.
func decodeFirstWins(dec *json.Decoder) (any, error) {
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := &orderedObject{members: map[string]any{}}
		for dec.More() {
			name, err := dec.Token()
			if err != nil {
				return nil, err
			}
			value, err := decodeFirstWins(dec)
			if err != nil {
				return nil, err
			}
			if _, dup := obj.members[name.(string)]; !dup {
				obj.names = append(obj.names, name.(string))
				obj.members[name.(string)] = value
			}
		}
		_, err = dec.Token()
		return obj, err
	case json.Delim('['):
		var arr []any
		for dec.More() {
			value, err := decodeFirstWins(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, value)
		}
		_, err = dec.Token()
		return arr, err
	}
	return tok, nil
}

// walk calls found for every value under doc, and missing for a path
// past the end of every object and array, until budget runs out.
func walk(doc any, path []string, budget *int, found func([]string, any), missing func([]string)) {
	if *budget--; *budget < 0 {
		return
	}
	found(path, doc)
	path = path[:len(path):len(path)] // appends below must not share
	switch doc := doc.(type) {
	case *orderedObject:
		for _, name := range doc.names {
			walk(doc.members[name], append(path, name), budget, found, missing)
		}
		missing(append(path, absentName(doc)))
	case []any:
		for i, elem := range doc {
			walk(elem, append(path, strconv.Itoa(i)), budget, found, missing)
		}
		missing(append(path, strconv.Itoa(len(doc))))
	}
}

// absentName returns a member name obj does not have.
func absentName(obj *orderedObject) string {
	for i := 0; ; i++ {
		name := fmt.Sprint("absent", i)
		if _, ok := obj.members[name]; !ok {
			return name
		}
	}
}

// compareDecoded describes how v differs from want, decoded by
// encoding/json, or returns "".
func compareDecoded(v Value, want any) string {
	var wantKind Kind
	switch want := want.(type) {
	case string:
		if v.Kind() == String && v.String() != want {
			return fmt.Sprintf("String() = %q, encoding/json has %q", v.String(), want)
		}
		wantKind = String
	case json.Number:
		if v.Kind() == Number && string(v.Raw()) != string(want) {
			return fmt.Sprintf("encoding/json has %s", want)
		}
		wantKind = Number
	case bool:
		wantKind = Bool
		if v.String() != strconv.FormatBool(want) {
			return fmt.Sprintf("encoding/json has %v", want)
		}
	case nil:
		wantKind = Null
	case *orderedObject:
		wantKind = Object
	case []any:
		wantKind = Array
	}
	if v.Kind() != wantKind {
		return fmt.Sprintf("kind %v, encoding/json has %v", v.Kind(), wantKind)
	}
	if wantKind == Object || wantKind == Array {
		if !json.Valid(v.Raw()) {
			return "raw text is not valid JSON"
		}
	}
	return ""
}
