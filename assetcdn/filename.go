package assetcdn

import (
	"mime"
	"net/http"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxFilenameBytes is the longest original name kept, as on most
// filesystems.
const maxFilenameBytes = 255

// SanitizeFilename turns the filename a client sent into a name that is
// safe to store as metadata and to put in a Content-Disposition header.
// It keeps only the last path element of either slash style (browsers
// send "C:\fakepath\x.png"; Go's Part.FileName keeps backslashes on
// Linux), drops control characters and NUL, replaces invalid UTF-8,
// trims dots and spaces that make names hidden or reserved, and cuts to
// 255 bytes keeping the extension. An unusable name becomes "file".
func SanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '"' || r == utf8.RuneError || unicode.Is(unicode.Bidi_Control, r) {
			return -1
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if name == "" {
		return "file"
	}
	if len(name) > maxFilenameBytes {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		name = truncateUTF8(name[:len(name)-len(ext)], maxFilenameBytes-len(ext)) + ext
	}
	return name
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// keyExtension is the {ext} of a key: the original name's extension when
// it is short, plain ASCII and names the stored type (a PNG sent as
// "x.html" is stored as ".png": anything that types files by extension,
// a file_server over a file store or a synced copy, must not serve it as
// HTML), else the usual one for the stored type, else "".
func keyExtension(filename, contentType string) string {
	ext := strings.ToLower(path.Ext(filename))
	if len(ext) >= 2 && len(ext) <= 11 && isAlnum(ext[1:]) && extensionType(ext) == contentType {
		return ext
	}
	if ext, ok := preferredExtensions[contentType]; ok {
		return ext
	}
	if exts, _ := mime.ExtensionsByType(contentType); len(exts) > 0 {
		return exts[0]
	}
	return ""
}

// preferredExtensions are the usual extensions of common types, where
// mime.ExtensionsByType would give the first in sort order (".jfif").
var preferredExtensions = map[string]string{
	"image/jpeg":      ".jpg",
	"image/png":       ".png",
	"image/gif":       ".gif",
	"image/webp":      ".webp",
	"image/avif":      ".avif",
	"image/bmp":       ".bmp",
	"image/x-icon":    ".ico",
	"application/pdf": ".pdf",
	"application/zip": ".zip",
	"text/plain":      ".txt",
	"text/csv":        ".csv",
	"video/mp4":       ".mp4",
	"video/webm":      ".webm",
	"audio/mpeg":      ".mp3",
	"audio/wave":      ".wav",
	"audio/ogg":       ".ogg",
	"font/woff2":      ".woff2",
}

// extensionType is the media type (no parameters) an extension names,
// or "".
func extensionType(ext string) string {
	byExt, _, _ := mime.ParseMediaType(mime.TypeByExtension(ext))
	if byExt == "" {
		// Go's table lacks some common types.
		switch ext {
		case ".md", ".markdown":
			byExt = "text/markdown"
		case ".docx":
			byExt = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
		case ".xlsx":
			byExt = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
		case ".pptx":
			byExt = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
		}
	}
	return byExt
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// refinedTypes are the only cases where the filename's extension may
// refine what content sniffing found: containers and plain text whose
// sniffed type is generic. Sniffing never yields to the extension for
// anything a browser would render as active content.
var refinedTypes = map[string]map[string]bool{
	"application/zip": {
		"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   true,
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         true,
		"application/vnd.openxmlformats-officedocument.presentationml.presentation": true,
		"application/epub+zip":     true,
		"application/java-archive": true,
	},
	"text/plain": {
		"text/csv":         true,
		"text/markdown":    true,
		"application/json": true,
	},
	"text/xml": {
		"image/svg+xml": true,
	},
}

// DetectContentType decides the stored Content-Type from the first bytes
// of the content (http.DetectContentType) and the filename's extension,
// never from the type the client declared.
func DetectContentType(head []byte, filename string) string {
	sniffed, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	if sniffed == "" {
		sniffed = "application/octet-stream"
	}
	byExt := extensionType(strings.ToLower(path.Ext(filename)))
	if refinedTypes[sniffed][byExt] {
		return byExt
	}
	return sniffed
}

// TypeAllowed reports whether contentType matches one of the patterns:
// "image/png", "image/*", "*/*" or "*". Wildcards never admit types that
// run script when opened from the storage origin (SVG, HTML, XML, JS):
// those must be listed exactly.
func TypeAllowed(contentType string, patterns []string) bool {
	if len(patterns) == 0 {
		return !activeContent[contentType]
	}
	major, _, _ := strings.Cut(contentType, "/")
	for _, p := range patterns {
		switch {
		case p == contentType:
			return true
		case activeContent[contentType]:
			continue
		case p == "*" || p == "*/*":
			return true
		case strings.HasSuffix(p, "/*") && strings.TrimSuffix(p, "/*") == major:
			return true
		}
	}
	return false
}

// activeContent are types a browser executes when served inline.
var activeContent = map[string]bool{
	"text/html":              true,
	"image/svg+xml":          true,
	"text/xml":               true,
	"application/xml":        true,
	"application/xhtml+xml":  true,
	"text/javascript":        true,
	"application/javascript": true,
}

// inlineTypes may be shown in the browser; everything else is stored with
// Content-Disposition: attachment so that opening it downloads it.
func inlineType(contentType string) bool {
	major, _, _ := strings.Cut(contentType, "/")
	switch {
	case activeContent[contentType]:
		return false
	case major == "image", major == "video", major == "audio":
		return true
	case contentType == "application/pdf", contentType == "text/plain":
		return true
	}
	return false
}

// contentDisposition carries the sanitized original name. A non-ASCII
// name goes in both forms RFC 6266 section 4.3 recommends: an ASCII
// fallback in filename= for old clients, the UTF-8 name in filename*=
// (RFC 5987), which current browsers prefer.
func contentDisposition(contentType, filename string) string {
	disp := "attachment"
	if inlineType(contentType) {
		disp = "inline"
	}
	v := mime.FormatMediaType(disp, map[string]string{"filename": filename})
	if v == "" {
		return disp
	}
	if !strings.Contains(v, "filename*=") {
		return v
	}
	fallback := strings.Map(func(r rune) rune {
		if r > 0x7e || r < 0x20 {
			return '_'
		}
		return r
	}, filename)
	plain := mime.FormatMediaType(disp, map[string]string{"filename": fallback})
	return plain + strings.TrimPrefix(v, disp)
}
