package logquery

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseWhere(t *testing.T) {
	tests := []struct {
		expr             string
		path, op, value  string // path dotted
		wantErrSubstring string
	}{
		{expr: "status=200", path: "status", op: "=", value: "200"},
		{expr: "status!=200", path: "status", op: "!=", value: "200"},
		{expr: "status>=500", path: "status", op: ">=", value: "500"},
		{expr: "status<=399", path: "status", op: "<=", value: "399"},
		{expr: "duration>0.5", path: "duration", op: ">", value: "0.5"},
		{expr: "size<1e3", path: "size", op: "<", value: "1e3"},
		{expr: "request.uri~/cart", path: "request.uri", op: "~", value: "/cart"},
		{expr: "  request.host  =  shop.example.com ", path: "request.host", op: "=", value: "shop.example.com"},
		{expr: "request.uri~a=b", path: "request.uri", op: "~", value: "a=b"},
		{expr: "msg=x>y", path: "msg", op: "=", value: "x>y"},
		{expr: "msg==x", path: "msg", op: "=", value: "=x"},
		{expr: "a>==b", path: "a", op: ">=", value: "=b"},
		{expr: "a<>b", path: "a", op: "<", value: ">b"},
		{expr: "a!b=c", path: "a!b", op: "=", value: "c"},
		{expr: "a=b c", path: "a", op: "=", value: "b c"},
		{expr: "user_id=", path: "user_id", op: "=", value: ""},
		{expr: "user_id != ", path: "user_id", op: "!=", value: ""},
		{expr: `msg="a b"`, path: "msg", op: "=", value: "a b"},
		{expr: `msg= " =x\"\u00e9" `, path: "msg", op: "=", value: ` =x"é`},
		{expr: `msg=""`, path: "msg", op: "=", value: ""},
		{expr: `msg=a"b"`, path: "msg", op: "=", value: `a"b"`},
		{expr: "request.headers.User-Agent.0~curl", path: "request.headers.User-Agent.0", op: "~", value: "curl"},

		{expr: "status>", wantErrSubstring: `--where "status>": no value after ">"`},
		{expr: "status>= ", wantErrSubstring: `--where "status>= ": no value after ">="`},
		{expr: "msg~", wantErrSubstring: `no value after "~"`},
		{expr: `msg~""`, wantErrSubstring: `no value after "~"`},
		{expr: "=5", wantErrSubstring: `--where "=5": no field before "="`},
		{expr: "  !=5", wantErrSubstring: `no field before "!="`},
		{expr: "status", wantErrSubstring: `--where "status": no operator; want one of = != >= <= > < ~`},
		{expr: "status!500", wantErrSubstring: "no operator"},
		{expr: "", wantErrSubstring: "no operator"},
		{expr: "a..b=1", wantErrSubstring: `empty path segment in "a..b"`},
		{expr: ".a=1", wantErrSubstring: "empty path segment"},
		{expr: "a.=1", wantErrSubstring: "empty path segment"},
		{expr: `msg="a`, wantErrSubstring: `quoted value "a is not a valid JSON string`},
		{expr: `msg="a"b`, wantErrSubstring: "not a valid JSON string"},
		{expr: `msg="\q"`, wantErrSubstring: "not a valid JSON string"},
		{expr: "msg=a\xffb", wantErrSubstring: "not valid UTF-8"},
	}
	for _, tt := range tests {
		c, err := ParseWhere(tt.expr)
		if tt.wantErrSubstring != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstring) {
				t.Errorf("ParseWhere(%q) error = %v, want one containing %q", tt.expr, err, tt.wantErrSubstring)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseWhere(%q): %v", tt.expr, err)
			continue
		}
		if got := strings.Join(c.path, "."); got != tt.path || opText[c.op] != tt.op || c.value != tt.value {
			t.Errorf("ParseWhere(%q) = path %q op %q value %q, want %q %q %q",
				tt.expr, got, opText[c.op], c.value, tt.path, tt.op, tt.value)
		}
	}
}

func TestCondString(t *testing.T) {
	for expr, want := range map[string]string{
		" status >= 500 ":   "status>=500",
		`msg=" a "`:         `msg=" a "`,
		`msg="=a"`:          `msg="=a"`,
		`msg="\"a"`:         `msg="\"a"`,
		`msg="<a&b>"`:       `msg="<a&b>"`,
		"a! =b":             "a! =b",
		"request.uri~a=b":   "request.uri~a=b",
		`msg="tab\there"`:   "msg=tab\there",
		`msg=" tab\there "`: `msg=" tab\there "`,
	} {
		c, err := ParseWhere(expr)
		if err != nil {
			t.Fatalf("ParseWhere(%q): %v", expr, err)
		}
		if got := c.String(); got != want {
			t.Errorf("ParseWhere(%q).String() = %q, want %q", expr, got, want)
		}
		checkReparse(t, c)
	}
}

// checkReparse fails t unless c.String() parses back to c.
func checkReparse(t *testing.T, c Cond) {
	t.Helper()
	again, err := ParseWhere(c.String())
	if err != nil {
		t.Fatalf("ParseWhere(%q), from String(): %v", c.String(), err)
	}
	if !reflect.DeepEqual(again, c) {
		t.Errorf("ParseWhere(%q) = %#v, want %#v", c.String(), again, c)
	}
}

func TestMatch(t *testing.T) {
	const line = `{"status":200,"float":200.5,"big":1e3,"host":"shop.example.com","uri":"/cart?a=b",` +
		`"ts":"2026-12-02T07:13:46Z","ver":"1.10","esc":"a\"b\u00e9","empty":"","ok":true,"no":false,` +
		`"nil":null,"obj":{"a":1},"arr":[1,"x"],"num_str":"200"}`
	tests := []struct {
		expr string
		want bool
	}{
		{"status=200", true},
		{"status=200.0", true},
		{"status=2e2", true},
		{"status=201", false},
		{"status=abc", false},
		{"status!=200", false},
		{"status!=201", true},
		{"status>=200", true},
		{"status>=500", false},
		{"status>199.9", true},
		{"status<1000", true}, // numeric: as text "200" > "1000"
		{"status<=200", true},
		{"status<200", false},
		{"status>abc", false},
		{"big=1000", true},
		{"float>200", true},
		{"host=shop.example.com", true},
		{"host=SHOP.example.com", false},
		{"host!=shop.example.com", false},
		{"host=shop", false},
		{"host~example", true},
		{"host~EXAMPLE", false},
		{"host>shop", true},
		{"host<shop", false},
		{"uri=/cart?a=b", true},
		{`esc=a"bé`, true},
		{`esc~"\"bé"`, true},
		{`esc=a\"b\u00e9`, false}, // compared decoded, not as JSON text
		{"empty=", true},
		{"empty!=", false},
		{"host=", false},
		{"num_str=200", true},
		{"num_str=200.0", false}, // a String compares as text
		{"num_str>1000", true},   // as text
		{"ts>=2026-12-01", true},
		{"ts<2026-12-02T07:13:47Z", true},
		{"ts<2026-12-02T07:13:46.5Z", false}, // as text, "Z" > "."
		{"ts>2026-12-02T08", false},
		{"ver>1.9", false}, // "1.10" < "1.9" as text
		{"status~20", true},
		{"status~00", true},
		{"status~3", false},
		{"float~.5", true},
		{"ok=true", true},
		{"ok=false", false},
		{"no=false", true},
		{"ok!=true", false},
		{"ok>false", false},
		{"ok~ru", true},
		{"nil=null", true},
		{"nil!=null", false},
		{"nil<x", false},
		{`obj={"a":1}`, true},
		{`obj~"a"`, true},
		{"obj>a", false},
		{`arr=[1,"x"]`, true},
		{"arr.1=x", true},
		{"arr.0=1", true},
		{"arr.2=1", false},
		{"missing=1", false},
		{"missing!=1", true},
		{"missing!=", true},
		{"missing=", false},
		{"missing>1", false},
		{"missing<1", false},
		{"missing~a", false},
		{"status.x=1", false},
		{"status.x!=1", true},
	}
	for _, tt := range tests {
		c, err := ParseWhere(tt.expr)
		if err != nil {
			t.Fatalf("ParseWhere(%q): %v", tt.expr, err)
		}
		if got := c.Match([]byte(line)); got != tt.want {
			t.Errorf("%s on the test line = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

func TestMatchMalformedLine(t *testing.T) {
	for _, line := range []string{"", "not json", `{"status":`, `[{"status":500}]`} {
		for expr, want := range map[string]bool{"status=500": false, "status!=500": true, "status>1": false} {
			c, _ := ParseWhere(expr)
			if got := c.Match([]byte(line)); got != want {
				t.Errorf("%s on %q = %v, want %v", expr, line, got, want)
			}
		}
	}
}

func TestConds(t *testing.T) {
	line := []byte(accessLogLine)
	parse := func(exprs ...string) Conds {
		var cs Conds
		for _, expr := range exprs {
			c, err := ParseWhere(expr)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		return cs
	}
	for _, tt := range []struct {
		conds Conds
		want  bool
	}{
		{nil, true},
		{parse("status=200"), true},
		{parse("status=200", "request.host=shop.example.com", "request.method=GET"), true},
		{parse("status=200", "request.method=POST"), false},
		{parse("status>=500", "request.method=GET"), false},
	} {
		if got := tt.conds.Match(line); got != tt.want {
			t.Errorf("%v.Match = %v, want %v", tt.conds, got, tt.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	line := []byte(accessLogLine)
	for _, expr := range []string{"status>=500", "request.host=shop.example.com", "request.uri~cart", "duration<0.5"} {
		c, _ := ParseWhere(expr)
		if n := testing.AllocsPerRun(100, func() { c.Match(line) }); n != 0 {
			t.Errorf("%s allocates %v times per line, want 0", expr, n)
		}
	}
}

func FuzzWhere(f *testing.F) {
	for _, expr := range []string{"status>=500", "request.host=shop.example.com", `msg=" a\"b "`,
		"a!b=c", "a! =c", "x~=", "ts<2026", "request.headers.User-Agent.0~curl", "a..b=1", `m="\u00"`} {
		f.Add(expr, []byte(accessLogLine))
	}
	f.Add("arr.1!=x", []byte(`{"arr":[1,"x"]}`))
	f.Fuzz(func(t *testing.T, expr string, line []byte) {
		c, err := ParseWhere(expr)
		if err != nil {
			return
		}
		c.Match(line)
		checkReparse(t, c)
	})
}
