package assetcdn

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

func TestSanitizeFilename(t *testing.T) {
	tests := []struct{ in, want string }{
		{"photo.png", "photo.png"},
		{`C:\fakepath\photo.png`, "photo.png"},
		{"../../etc/passwd", "passwd"},
		{"..", "file"},
		{"", "file"},
		{"a\x00b.png", "ab.png"},
		{"evil\r\nX-Header: 1.png", "evilX-Header: 1.png"},
		{"\xff\xfe.png", "png"},
		{`quote".png`, "quote.png"},
		{"rtl\u202Egnp.exe", "rtlgnp.exe"},
		{" .hidden ", "hidden"},
		{"résumé.pdf", "résumé.pdf"},
		{strings.Repeat("a", 10000) + ".png", strings.Repeat("a", 251) + ".png"},
		{strings.Repeat("é", 300), strings.Repeat("é", 127)},
	}
	for _, tt := range tests {
		if got := SanitizeFilename(tt.in); got != tt.want {
			t.Errorf("SanitizeFilename(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzSanitizeFilename(f *testing.F) {
	for _, s := range []string{"a.png", `C:\fakepath\x`, "../..", "a\x00b", "\xff", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SanitizeFilename(in)
		if got == "" || len(got) > maxFilenameBytes || !utf8.ValidString(got) {
			t.Fatalf("SanitizeFilename(%q) = %q", in, got)
		}
		if strings.ContainsAny(got, "/\\\"\x00\r\n") || got == "." || got == ".." {
			t.Fatalf("SanitizeFilename(%q) = %q keeps a dangerous character", in, got)
		}
	})
}

func TestDetectContentType(t *testing.T) {
	tests := []struct {
		head     string
		filename string
		want     string
	}{
		{"\x89PNG\r\n\x1a\n....", "x.jpg", "image/png"},
		{"%PDF-1.4", "x.png", "application/pdf"},
		{"<html><body>", "x.png", "text/html"},
		{"a,b\n1,2\n", "x.csv", "text/csv"},
		{"a,b\n1,2\n", "x.html", "text/plain"},
		{"PK\x03\x04rest", "x.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
		{"PK\x03\x04rest", "x.exe", "application/zip"},
		{"<?xml version=\"1.0\"?><svg>", "x.svg", "image/svg+xml"},
		{"\x00\x01\x02", "x.bin", "application/octet-stream"},
	}
	for _, tt := range tests {
		if got := DetectContentType([]byte(tt.head), tt.filename); got != tt.want {
			t.Errorf("DetectContentType(%q, %q) = %q, want %q", tt.head, tt.filename, got, tt.want)
		}
	}
}

func TestTypeAllowed(t *testing.T) {
	tests := []struct {
		ctype    string
		patterns []string
		want     bool
	}{
		{"image/png", nil, true},
		{"text/html", nil, false},
		{"image/png", []string{"image/*"}, true},
		{"image/svg+xml", []string{"image/*"}, false},
		{"image/svg+xml", []string{"image/*", "image/svg+xml"}, true},
		{"application/pdf", []string{"image/*"}, false},
		{"application/pdf", []string{"*/*"}, true},
		{"text/html", []string{"*"}, false},
	}
	for _, tt := range tests {
		if got := TypeAllowed(tt.ctype, tt.patterns); got != tt.want {
			t.Errorf("TypeAllowed(%q, %v) = %v", tt.ctype, tt.patterns, got)
		}
	}
}

func TestKeyTemplate(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	kt, err := objectstore.ParseKeyTemplate("u/{yyyy}/{mm}/{dd}/{HH}/{uuid}{ext}")
	if err != nil {
		t.Fatal(err)
	}
	if got := kt.Render(objectstore.KeyValues{UUID: "abc", Ext: ".png", Time: at}); got != "u/2026/03/04/05/abc.png" {
		t.Fatalf("Render = %q", got)
	}
	for _, bad := range []string{"{ext}", "a/{nope}/{uuid}", "a/{uuid", "{http.request.host}/{uuid}", "/{uuid}", "a//{uuid}", "../{uuid}", "a\\{uuid}"} {
		if _, err := objectstore.ParseKeyTemplate(bad); err == nil {
			t.Errorf("ParseKeyTemplate(%q) accepted", bad)
		}
	}
}

func TestValidateKey(t *testing.T) {
	for _, good := range []string{"a", "a/b.png", "uploads/2026/x y.png", "é/ü"} {
		if err := objectstore.ValidateKey(good); err != nil {
			t.Errorf("ValidateKey(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "a/../b", "./a", "a\x00", "a\\b", "\xff", strings.Repeat("a", 1025)} {
		if err := objectstore.ValidateKey(bad); err == nil {
			t.Errorf("ValidateKey(%q) accepted", bad)
		}
	}
}

func TestKeyTemplateAcceptsCaddyfileUUIDShorthand(t *testing.T) {
	kt, err := objectstore.ParseKeyTemplate("a/{http.request.uuid}{ext}")
	if err != nil {
		t.Fatal(err)
	}
	if got := kt.Render(objectstore.KeyValues{UUID: "u", Ext: ".x"}); got != "a/u.x" {
		t.Fatalf("Render = %q", got)
	}
}

func TestKeyExtensionFollowsTheStoredType(t *testing.T) {
	tests := []struct{ filename, ctype, want string }{
		{"Me.PNG", "image/png", ".png"},
		{"photo.jpeg", "image/jpeg", ".jpeg"},
		{"photo", "image/jpeg", ".jpg"},
		{"x.html", "image/png", ".png"}, // a PNG named .html is stored as .png
		{"report.pdf.exe", "application/pdf", ".pdf"},
		{"notes.md", "text/markdown", ".md"},
		{"a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"},
		{"blob.weird", "application/x-unknown-type", ""},
	}
	for _, tc := range tests {
		if got := keyExtension(tc.filename, tc.ctype); got != tc.want {
			t.Errorf("keyExtension(%q, %q) = %q, want %q", tc.filename, tc.ctype, got, tc.want)
		}
	}
}

func TestContentDispositionCarriesBothNameForms(t *testing.T) {
	tests := []struct{ ctype, filename, want string }{
		{"image/png", "Me.PNG", "inline; filename=Me.PNG"},
		{"application/zip", "a b.zip", `attachment; filename="a b.zip"`},
		{"application/pdf", "résumé.pdf", `inline; filename=r_sum_.pdf; filename*=utf-8''r%C3%A9sum%C3%A9.pdf`},
	}
	for _, tc := range tests {
		if got := contentDisposition(tc.ctype, tc.filename); got != tc.want {
			t.Errorf("contentDisposition(%q, %q) = %q, want %q", tc.ctype, tc.filename, got, tc.want)
		}
	}
}
