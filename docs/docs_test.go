// Package docs holds caddy-lb's manual (the *.md pages beside this file) and
// the test that keeps its examples true: every ```caddyfile block in
// docs/*.md and README.md must adapt, and every ```json twin block must be
// exactly what the Caddyfile block before it adapts to.
package docs

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddylb/caddylb"
)

var update = flag.Bool("update", false, "rewrite every ```json twin block from the adapter's output")

// A fenced block of a Markdown file.
type block struct {
	info  string // the info string after the opening fence: "caddyfile", "json twin"
	start int    // line of the opening fence, 1-based
	end   int    // line of the closing fence
	body  string
}

// pages are the Markdown files whose examples are checked.
func pages(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	return append(files, filepath.Join("..", "README.md"))
}

func readBlocks(t *testing.T, file string) ([]string, []block) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var blocks []block
	var cur *block
	var body []string
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if !strings.HasPrefix(trimmed, "```") {
			if cur != nil {
				body = append(body, line)
			}
			continue
		}
		if cur == nil {
			cur = &block{info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), start: i + 1}
			body = nil
			continue
		}
		if trimmed != "```" {
			t.Fatalf("%s:%d: a fence opens inside the block opened at line %d", file, i+1, cur.start)
		}
		cur.end = i + 1
		cur.body = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, *cur)
		cur = nil
	}
	if cur != nil {
		t.Fatalf("%s:%d: fenced block never closed", file, cur.start)
	}
	return lines, blocks
}

var caddyfileLine = regexp.MustCompile(`Caddyfile:(\d+)`)

// adapt adapts one block. The adapter is given the name "Caddyfile", as
// some handlers put the file name into the JSON; positions in errors are
// then rewritten to the Markdown file's lines (the block's body starts on
// the line after its opening fence).
func adapt(text, file string, fence int) (string, error) {
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return "", errors.New(caddyfileLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
			n, _ := strconv.Atoi(strings.TrimPrefix(m, "Caddyfile:"))
			return fmt.Sprintf("%s:%d", file, fence+n)
		}))
	}
	var msgs []string
	for _, w := range warnings {
		// Examples align their comments for the reader, which caddy fmt
		// would undo; every other warning fails.
		if strings.HasPrefix(w.Message, "Caddyfile input is not formatted") {
			continue
		}
		msgs = append(msgs, fmt.Sprintf("%s:%d: %s", file, fence+w.Line, w.Message))
	}
	if len(msgs) > 0 {
		return "", fmt.Errorf("adapter warnings: %s", strings.Join(msgs, "; "))
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "  "); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// TestExamples adapts every ```caddyfile block and compares every
// ```json twin block with what the Caddyfile block before it (no other
// fenced block between them) adapts to. Other ```json blocks must at least
// be valid JSON. ```caddyfile-fragment blocks are not checked.
func TestExamples(t *testing.T) {
	checked := 0
	for _, file := range pages(t) {
		lines, blocks := readBlocks(t, file)
		changed := false
		var lastCaddyfile *block
		var lastAdapted string
		// Twin blocks are rewritten from the bottom so line numbers stay valid.
		type rewrite struct {
			b    block
			json string
		}
		var rewrites []rewrite
		for i := range blocks {
			b := blocks[i]
			lang, rest, _ := strings.Cut(b.info, " ")
			switch {
			case lang == "caddyfile":
				checked++
				lastCaddyfile, lastAdapted = &blocks[i], ""
				got, err := adapt(b.body, file, b.start)
				if err != nil {
					t.Errorf("%s:%d: caddyfile block does not adapt: %v", file, b.start, err)
					continue
				}
				lastAdapted = got
				if strings.TrimSpace(rest) != "no-load" {
					if err := load(t, got); err != nil {
						t.Errorf("%s:%d: caddyfile block adapts but does not load: %v", file, b.start, err)
					}
				}
				continue
			case lang == "json" && strings.TrimSpace(rest) == "twin":
				if lastCaddyfile == nil {
					t.Errorf("%s:%d: json twin block without a caddyfile block right before it", file, b.start)
					continue
				}
				if lastAdapted == "" {
					t.Errorf("%s:%d: json twin of the caddyfile block at line %d, which does not adapt", file, b.start, lastCaddyfile.start)
					lastCaddyfile = nil
					continue
				}
				if *update {
					rewrites = append(rewrites, rewrite{b, lastAdapted})
					changed = true
				} else if !sameJSON(t, b.body, lastAdapted) {
					t.Errorf("%s:%d: json twin differs from what the caddyfile block at line %d adapts to:\n%s",
						file, b.start, lastCaddyfile.start, lastAdapted)
				}
			case lang == "json":
				var v any
				if err := json.Unmarshal([]byte(b.body), &v); err != nil {
					t.Errorf("%s:%d: json block is not valid JSON: %v", file, b.start, err)
				}
			}
			// Any block other than a caddyfile block ends the twin pairing.
			lastCaddyfile = nil
		}
		if changed {
			for i := len(rewrites) - 1; i >= 0; i-- {
				r := rewrites[i]
				repl := strings.Split(r.json, "\n")
				lines = append(lines[:r.b.start], append(repl, lines[r.b.end-1:]...)...)
			}
			if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no caddyfile blocks found")
	}
}

// placeholderEnv matches the {env.NAME} placeholders of an example.
var placeholderEnv = regexp.MustCompile(`\{env\.([A-Za-z_][A-Za-z0-9_]*)\}`)

// load provisions an adapted example as caddy validate does, without
// starting it, so that a config that adapts but is refused at load (an
// undeclared store, a bad combination) fails. Secrets from {env.*} get
// 32-character stand-ins, Caddy's data goes to a temporary directory,
// and examples that name network session stores are only adapted: their
// Redis or Memcached would be dialled at load, and the tests dial
// loopback only. A block fenced ```caddyfile no-load (files only a real
// deployment has) is only adapted too.
func load(t *testing.T, adapted string) error {
	t.Helper()
	if strings.Contains(adapted, `"backend": "redis"`) || strings.Contains(adapted, `"backend": "memcached"`) {
		return nil
	}
	for _, m := range placeholderEnv.FindAllStringSubmatch(adapted, -1) {
		t.Setenv(m[1], strings.Repeat("x", 32))
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(adapted), &cfg); err != nil {
		return err
	}
	cfg.Admin = &caddy.AdminConfig{Disabled: true}
	// Relative paths (a file store's ./var/assets) land in a temporary
	// directory, not in docs/.
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if err := os.Chdir(t.TempDir()); err != nil {
		return err
	}
	defer os.Chdir(wd)
	return caddy.Validate(&cfg)
}

func sameJSON(t *testing.T, want, got string) bool {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Errorf("json twin is not valid JSON: %v", err)
		return false
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(w, g)
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinks checks that every relative link of the pages names a file of
// the repository: a link that leaves it is refused.
func TestLinks(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range pages(t) {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range strings.Split(string(raw), "\n") {
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				target, _, _ = strings.Cut(target, "#")
				abs, err := filepath.Abs(filepath.Join(filepath.Dir(file), target))
				if err != nil {
					t.Fatal(err)
				}
				if rel, err := filepath.Rel(root, abs); err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s:%d: link %s leaves the repository", file, n+1, m[1])
					continue
				}
				if _, err := os.Stat(abs); err != nil {
					t.Errorf("%s:%d: link %s: %v", file, n+1, m[1], err)
				}
			}
		}
	}
}
